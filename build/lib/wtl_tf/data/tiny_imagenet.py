"""TinyImageNet-200 from the published `tiny-imagenet-200.zip`, read without unpacking.

The archive holds `tiny-imagenet-200/wnids.txt` (the 200 class ids), training images
`train/<wnid>/images/*.JPEG` and validation images `val/images/*.JPEG` labelled by
`val/val_annotations.txt` (file, wnid, box). The test images carry no labels, so, as
La-MAML does, the validation images regrouped by class serve as the test set.
"""

import zipfile

import numpy as np
import tensorflow as tf

from wtl_tf.data import archives
from wtl_tf.errors import DataError

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
ARCHIVE = "tiny-imagenet-200.zip"
ROOT = "tiny-imagenet-200/"


def _decode(raw, name):
    try:
        image = tf.io.decode_jpeg(raw, channels=3).numpy()
    except tf.errors.InvalidArgumentError:
        raise DataError(f"{name} in the TinyImageNet archive is not a readable JPEG") from None
    if image.shape != (64, 64, 3):
        image = tf.image.resize(image, (64, 64), method="area").numpy().round().astype(np.uint8)
    return image


def load(data_dir, allow_download=False, max_per_class=None):
    """(train_x [N, 64, 64, 3] uint8, train_y int64, test_x, test_y, wnids).
    `max_per_class` keeps the first that many training images of each class (sorted)."""
    path = archives.present_or_fetch(data_dir, ARCHIVE, URL, MD5, allow_download)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise DataError(f"{path} is not a readable zip archive (corrupt or truncated); delete "
                        "it and download it again") from None
    with archive:
        names = set(archive.namelist())
        for needed in ("wnids.txt", "val/val_annotations.txt"):
            if ROOT + needed not in names:
                raise DataError(f"{path} has no {ROOT + needed}: not the TinyImageNet archive")
        wnids = archive.read(ROOT + "wnids.txt").decode().split()
        label = {w: i for i, w in enumerate(wnids)}
        train_x, train_y = [], []
        for wnid in wnids:
            prefix = f"{ROOT}train/{wnid}/images/"
            files = sorted(n for n in names if n.startswith(prefix) and n.endswith(".JPEG"))
            for name in files[:max_per_class]:
                train_x.append(_decode(archive.read(name), name))
                train_y.append(label[wnid])
        test_x, test_y = [], []
        for line in archive.read(ROOT + "val/val_annotations.txt").decode().splitlines():
            if not line.strip():
                continue
            file, wnid = line.split("\t")[:2]
            if wnid not in label:
                raise DataError(f"val_annotations.txt names class {wnid!r}, not in wnids.txt")
            name = f"{ROOT}val/images/{file}"
            test_x.append(_decode(archive.read(name), name))
            test_y.append(label[wnid])
    order = np.argsort(test_y, kind="stable")  # regrouped by class
    return (np.stack(train_x), np.asarray(train_y, np.int64), np.stack(test_x)[order],
            np.asarray(test_y, np.int64)[order], wnids)
