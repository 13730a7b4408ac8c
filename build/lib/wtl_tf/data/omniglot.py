"""Omniglot (Lake et al., 2015) from the original archives, or through TFDS.

The archives hold `<archive>/<Alphabet>/characterNN/<id>_<drawer>.png` (105x105, one bit,
black strokes on white). Images are decoded in a parallel tf.data pipeline, resized (area
averaging, i.e. anti-aliased) to `image_size` and kept as uint8; `normalize` maps them to
[0, 1] as torchvision's ToTensor does in the reference (white background = 1). Characters
present in several archives (Greek and Latin in both `small` archives) are read once, after
checking that the copies are identical.
"""

import os
import zipfile

import tensorflow as tf
import tensorflow_datasets as tfds

from wtl_tf.data import archives
from wtl_tf.data.decoding import decode_groups
from wtl_tf.errors import DataError


URL = "https://github.com/brendenlake/omniglot/raw/master/python/{}.zip"
MD5 = {
    "images_background": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
    "images_background_small1": "e704a628b5459e08445c13499850abc4",
    "images_background_small2": "b75a71a51d3b13f821f212756fe481fd",
}
DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "wtl_tf", "omniglot")


def archive_paths(data_dir, names, allow_download=True):
    unknown = [n for n in names if n not in MD5]
    if unknown:
        raise DataError(f"unknown Omniglot archive(s) {unknown}; known: {sorted(MD5)}")
    return [archives.fetch(data_dir, f"{n}.zip", URL.format(n), MD5[n], allow_download)
            for n in names]


def _png_members(path):
    try:
        with zipfile.ZipFile(path) as z:
            members = {}
            for info in z.infolist():
                parts = info.filename.split("/")
                if len(parts) == 4 and parts[3].endswith(".png"):
                    members.setdefault(f"{parts[1]}/{parts[2]}", []).append(info.filename)
            return {k: sorted(v) for k, v in members.items()}
    except zipfile.BadZipFile:
        raise DataError(f"{path} is not a readable zip archive (corrupt or truncated); delete "
                        "it and run again to download it") from None


def load_archives(paths, image_size=28):
    """ClassImages of every character in the given archives (deduplicated by name)."""
    groups, origins = {}, {}
    for path in paths:
        members = _png_members(path)
        with zipfile.ZipFile(path) as z:
            for character, files in members.items():
                data = [z.read(f) for f in files]
                if character in groups:
                    if data != groups[character]:
                        raise DataError(f"{character} differs between archives; the files "
                                        "are not the original release")
                    continue
                groups[character] = data
                origins[character] = [f"{path}:{f}" for f in files]
    return decode_groups(groups, image_size, origins=origins)


def load(data_dir=None, archive_names=("images_background", "images_evaluation"), image_size=28,
         allow_download=True):
    """Reads (downloading if needed, with md5 checks) and decodes the named archives.

    A `data_dir` that was given must exist (a typo is not created as a new directory); the
    default one is created and filled by the download."""
    if data_dir is None:
        data_dir = DEFAULT_DIR
    elif os.path.isfile(data_dir):
        raise DataError(f"--data_dir {data_dir!r} is a file; give the directory that holds the "
                        f"archives: --data_dir={os.path.dirname(os.path.abspath(data_dir))}")
    elif not os.path.isdir(data_dir):
        raise DataError(f"--data_dir {data_dir!r} does not exist; check the path, or leave "
                        f"--data_dir unset to download the archives to {DEFAULT_DIR}")
    else:
        missing = [n for n in archive_names if not os.path.exists(os.path.join(data_dir, f"{n}.zip"))]
        small = [n for n in MD5 if "small" in n and os.path.exists(os.path.join(data_dir, f"{n}.zip"))]
        if missing and small and not any("small" in n for n in archive_names):
            raise DataError(f"{data_dir} holds only the small Omniglot archives ({', '.join(small)}"
                            f"), not {', '.join(missing)}: use --split=omniglot_small_alphabets "
                            "(or another small-archive split), or leave --data_dir unset to "
                            "download the full release")
    return load_archives(archive_paths(data_dir, archive_names, allow_download), image_size)


def load_tfds(data_dir=None, splits=("train", "test"), image_size=28, builder_loader=None):
    """The same ClassImages read through TensorFlow Datasets' `omniglot` builder.

    TFDS names classes by alphabet index and character id; they are mapped back to the
    archive names through the builder's `alphabet` label names, so split files work
    unchanged. `builder_loader` (default `tfds.load`) is injectable for tests.
    """
    loader = builder_loader or (lambda split: tfds.load(
        "omniglot", split=split, data_dir=data_dir, with_info=True))
    groups = {}
    for split in splits:
        ds, info = loader(split)
        alphabets = info.features["alphabet"].names
        per_char = {}
        for example in ds.as_numpy_iterator():
            alphabet = alphabets[int(example["alphabet"])]
            key = (alphabet, int(example["alphabet_char_id"]))
            per_char.setdefault(key, []).append(tf.io.encode_png(example["image"][..., :1]).numpy())
        for (alphabet, char_id), blobs in per_char.items():
            groups[f"{alphabet}/character{char_id + 1:02d}"] = blobs
    return decode_groups(groups, image_size)


def normalize(images):
    return images / 255.0
