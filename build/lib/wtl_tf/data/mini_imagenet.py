"""miniImageNet (Vinyals et al.; Ravi & Larochelle split, 64/16/20 classes of 600 images).

Two formats that people actually have:
- `csv`: an `images/` directory of JPEGs plus `train.csv`, `val.csv`, `test.csv` with the
  header `filename,label` (Ravi & Larochelle);
- `pickle`: `mini-imagenet-cache-{train,val,test}.pkl`, each a dict with `image_data`
  (uint8 [n, 84, 84, 3]) and `class_dict` ({wnid: [row indices]}).
`auto` picks whichever is present. Images are resized to `image_size` (84) and normalised
as the sparse-MAML reference does: ToTensor, then ImageNet mean/std per channel. If the
data directory has a `checksums.md5` (md5sum format), every listed file is verified first.
"""

import csv
import os
import pickle

import numpy as np
import tensorflow as tf

from wtl_tf.data import archives
from wtl_tf.data.class_images import ClassImages
from wtl_tf.data.decoding import decode_groups
from wtl_tf.errors import DataError

SPLIT_FILES = {"train": "train", "validation": "val", "test": "test"}
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
FORMATS = ("auto", "csv", "pickle")


def normalize(images):
    return (images / 255.0 - tf.constant(MEAN, images.dtype)) / tf.constant(STD, images.dtype)


def _require(path, what):
    if not os.path.exists(path):
        raise DataError(f"{path} is missing ({what}); put the miniImageNet files in --data_dir "
                        "(images/ + train/val/test.csv, or mini-imagenet-cache-*.pkl)")
    return path


def verify_checksums(data_dir):
    listing = os.path.join(data_dir, "checksums.md5")
    if not os.path.exists(listing):
        return
    with open(listing) as f:
        for line in f:
            if line.strip():
                md5, name = line.split(None, 1)
                archives.verify(_require(os.path.join(data_dir, name.strip().lstrip("*")),
                                         "listed in checksums.md5"), md5)


def detect_format(data_dir):
    if os.path.exists(os.path.join(data_dir, "mini-imagenet-cache-train.pkl")):
        return "pickle"
    if os.path.exists(os.path.join(data_dir, "train.csv")):
        return "csv"
    raise DataError(f"no miniImageNet files in {data_dir!r}: expected train.csv (+ images/) or "
                    "mini-imagenet-cache-train.pkl; set --data_dir to their directory")


def load_split_csv(data_dir, split, image_size=84):
    path = _require(os.path.join(data_dir, f"{SPLIT_FILES[split]}.csv"), f"the {split} split")
    groups, origins = {}, {}
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0]] != ["filename", "label"]:
        raise DataError(f"{path} does not start with the header 'filename,label'; is it the "
                        "Ravi & Larochelle csv?")
    for row in rows[1:]:
        if len(row) != 2:
            raise DataError(f"{path}: malformed line {row!r}; expected 'filename,label'")
        image = _require(os.path.join(data_dir, "images", row[0]), f"listed in {path}")
        with open(image, "rb") as img:
            groups.setdefault(row[1], []).append(img.read())
        origins.setdefault(row[1], []).append(image)
    return decode_groups(groups, image_size, channels=3, origins=origins)


def load_split_pickle(data_dir, split, image_size=84):
    path = _require(os.path.join(data_dir, f"mini-imagenet-cache-{SPLIT_FILES[split]}.pkl"),
                    f"the {split} split")
    try:
        with open(path, "rb") as f:
            payload = pickle.load(f)
        images, class_dict = payload["image_data"], payload["class_dict"]
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path} is not a readable miniImageNet cache ({type(e).__name__}: {e}); "
                        "it is corrupt or truncated: download it again") from None
    images = np.asarray(images, np.uint8)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{path}: image_data has shape {images.shape}, expected [n, H, W, 3]")
    if images.shape[1:3] != (image_size, image_size):
        images = tf.cast(tf.round(tf.image.resize(images, [image_size, image_size], "area",
                                                  antialias=True)), tf.uint8).numpy()
    return ClassImages.from_groups({wnid: images[np.asarray(rows)]
                                    for wnid, rows in class_dict.items()})


def load(data_dir, image_size=84, data_format="auto"):
    """{split: ClassImages} for train/validation/test."""
    if not data_dir or not os.path.isdir(data_dir):
        raise DataError(f"miniImageNet data directory {data_dir!r} does not exist; pass "
                        "--data_dir (miniImageNet cannot be downloaded automatically)")
    if data_format not in FORMATS:
        raise DataError(f"unknown miniImageNet format {data_format!r}; use one of {FORMATS}")
    verify_checksums(data_dir)
    data_format = detect_format(data_dir) if data_format == "auto" else data_format
    loader = load_split_pickle if data_format == "pickle" else load_split_csv
    splits = {split: loader(data_dir, split, image_size) for split in SPLIT_FILES}
    seen = {}
    for split, images in splits.items():
        for name in images.names:
            if name in seen:
                raise DataError(f"class {name} is in both the {seen[name]} and {split} splits "
                                f"in {data_dir}; the split files are inconsistent")
            seen[name] = split
    return splits
