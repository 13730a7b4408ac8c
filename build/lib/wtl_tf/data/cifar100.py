"""CIFAR-100 from the published `cifar-100-python.tar.gz` (python pickles).

The archive holds `cifar-100-python/{train,test,meta}`: train/test are pickled dicts with
b'data' (N x 3072 uint8: the red, green and blue 32x32 planes of each image), b'fine_labels'
and b'coarse_labels'; meta holds b'fine_label_names'. Read straight from the archive (or an
extracted directory), without unpacking to disk.
"""

import os
import pickle
import tarfile

import numpy as np

from wtl_tf.data import archives
from wtl_tf.errors import DataError

URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
ARCHIVE = "cifar-100-python.tar.gz"


def _unpickle(raw, name):
    try:
        return pickle.loads(raw, encoding="bytes")
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a corrupt file
        raise DataError(f"CIFAR-100 {name} is not a readable pickle ({type(e).__name__}); "
                        "delete the archive and download it again") from None


def _members(data_dir, allow_download):
    extracted = os.path.join(data_dir, "cifar-100-python")
    if os.path.isdir(extracted):
        out = {}
        for name in ("train", "test", "meta"):
            path = os.path.join(extracted, name)
            if not os.path.exists(path):
                raise DataError(f"{path} is missing from the extracted CIFAR-100 directory")
            with open(path, "rb") as f:
                out[name] = f.read()
        return out
    path = archives.present_or_fetch(data_dir, ARCHIVE, URL, MD5, allow_download)
    try:
        with tarfile.open(path, "r:gz") as tar:
            out = {}
            for name in ("train", "test", "meta"):
                try:
                    out[name] = tar.extractfile(f"cifar-100-python/{name}").read()
                except KeyError:
                    raise DataError(f"{path} has no cifar-100-python/{name}: not the CIFAR-100 "
                                    "python archive") from None
            return out
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{path} is not a readable tar.gz archive ({e}); delete it and "
                        "download it again") from None


def load(data_dir, allow_download=False):
    """(train_x [N, 32, 32, 3] uint8, train_fine int64, test_x, test_fine, fine names)."""
    raw = _members(data_dir, allow_download)
    out = []
    for split in ("train", "test"):
        d = _unpickle(raw[split], split)
        try:
            data, labels = np.asarray(d[b"data"], np.uint8), np.asarray(d[b"fine_labels"])
        except KeyError as e:
            raise DataError(f"CIFAR-100 {split} lacks the key {e.args[0]!r}") from None
        if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise DataError(f"CIFAR-100 {split}: data {data.shape} and {len(labels)} labels; "
                            "expected N x 3072 and N labels")
        out += [data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)]
    names = [n.decode() for n in _unpickle(raw["meta"], "meta")[b"fine_label_names"]]
    return (*out, names)
