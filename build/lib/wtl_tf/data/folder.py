"""Any directory of class sub-folders (`--dataset=folder`), split by a split file.

    DATA_DIR/<class name>/<image files: jpg, jpeg, png, bmp, gif>

The split (`--split`, JSON or a directory of train/val/test.txt listing class folder
names) says which classes are meta-train, validation and test, so users can meta-train on
their own data or hold out a whole domain (e.g. CUB) for a cross-domain test.
"""

import os

from wtl_tf.data.decoding import decode_groups
from wtl_tf.errors import DataError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def load(data_dir, class_names, image_size=84, channels=3):
    """ClassImages of the listed class folders."""
    if not data_dir or not os.path.isdir(data_dir):
        raise DataError(f"image folder {data_dir!r} does not exist; pass --data_dir with one "
                        "sub-folder per class")
    groups, origins = {}, {}
    for name in sorted(set(class_names)):
        folder = os.path.join(data_dir, name)
        if not os.path.isdir(folder):
            raise DataError(f"class folder {folder} (named in the split) does not exist")
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(EXTENSIONS))
        if not files:
            raise DataError(f"class folder {folder} has no images ({', '.join(EXTENSIONS)})")
        blobs = []
        for f in files:
            with open(os.path.join(folder, f), "rb") as handle:
                blobs.append(handle.read())
        groups[name] = blobs
        origins[name] = [os.path.join(folder, f) for f in files]
    return decode_groups(groups, image_size, channels, origins)
