"""MNIST and Fashion-MNIST from their original IDX files (gzipped or raw).

Files, as published: `train-images-idx3-ubyte(.gz)`, `train-labels-idx1-ubyte(.gz)`,
`t10k-images-idx3-ubyte(.gz)`, `t10k-labels-idx1-ubyte(.gz)`. Images: big-endian uint32
magic 2051, count, rows, columns, then uint8 pixels; labels: magic 2049, count, then uint8
labels. A missing file is downloaded (checksummed) when allowed; a malformed one is a
DataError that names the file and what is wrong.
"""

import gzip
import os

import numpy as np

from wtl_tf.data import archives
from wtl_tf.errors import DataError

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")
SOURCES = {  # the published .gz files and their md5 (torchvision's resource lists)
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
               "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                       "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


def read_idx(path, magic):
    """The array of one IDX file: [n, rows, cols] uint8 images or [n] uint8 labels."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path} could not be read ({e}); delete it and download it again")
    dims = 3 if magic == IMAGE_MAGIC else 1
    header = 4 * (1 + dims)
    if len(data) < header:
        raise DataError(f"{path} is too short for an IDX header ({len(data)} bytes)")
    found, *shape = (int(v) for v in np.frombuffer(data[:header], ">u4"))
    if found != magic:
        raise DataError(f"{path} starts with magic {found}, not {magic} (an IDX "
                        f"{'image' if magic == IMAGE_MAGIC else 'label'} file): wrong or "
                        "corrupt file")
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataError(f"{path} holds {len(data) - header} bytes of data, its header "
                        f"promises {expected} ({' x '.join(map(str, shape))}): truncated or "
                        "corrupt; delete it and download it again")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _path(data_dir, name, dataset, index, allow_download):
    for candidate in (name, name + ".gz"):
        path = os.path.join(data_dir, candidate)
        if os.path.exists(path):
            return path
    base, md5 = SOURCES[dataset]
    if not allow_download:
        raise DataError(f"{dataset}: neither {name} nor {name}.gz is in {data_dir}; download "
                        f"them from {base} or allow downloading")
    return archives.fetch(data_dir, name + ".gz", base + name + ".gz", md5[index])


def load(data_dir, dataset="mnist", allow_download=False):
    """(train_x [60000, 28, 28, 1] uint8, train_y int64, test_x, test_y) of MNIST or
    Fashion-MNIST."""
    if dataset not in SOURCES:
        raise DataError(f"unknown IDX dataset {dataset!r}; choose one of {sorted(SOURCES)}")
    arrays = []
    for index, name in enumerate(FILES):
        path = _path(data_dir, name, dataset, index, allow_download)
        arrays.append(read_idx(path, IMAGE_MAGIC if "images" in name else LABEL_MAGIC))
    train_x, train_y, test_x, test_y = arrays
    for x, y, split in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
        if len(x) != len(y):
            raise DataError(f"{dataset} {split}: {len(x)} images but {len(y)} labels")
    return (train_x[..., None], train_y.astype(np.int64), test_x[..., None],
            test_y.astype(np.int64))
