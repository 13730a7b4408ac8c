"""Small CIFAR-100 and TinyImageNet archives in their exact published formats, for tests."""

import io
import os
import pickle
import tarfile
import zipfile

import numpy as np
import tensorflow as tf


def write_cifar100(directory, train, train_fine, test, test_fine, names):
    def pickled(obj):
        return pickle.dumps(obj, protocol=2)

    def split(images, fine):  # N x 3072: the R, G, B planes of each image
        return pickled({b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
                        b"fine_labels": list(map(int, fine)),
                        b"coarse_labels": [int(f) // 5 for f in fine]})

    members = {"train": split(train, train_fine), "test": split(test, test_fine),
               "meta": pickled({b"fine_label_names": [n.encode() for n in names],
                                b"coarse_label_names": [b"c"]})}
    with tarfile.open(os.path.join(directory, "cifar-100-python.tar.gz"), "w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def jpeg(pixels):
    return tf.io.encode_jpeg(pixels, quality=100).numpy()


def write_cifar100_classes(directory, classes=10, train_per_class=10, test_per_class=2, seed=0):
    """A cifar-100-python.tar.gz of `classes` classes of random images."""
    rng = np.random.default_rng(seed)
    train_fine = np.repeat(np.arange(classes), train_per_class)
    test_fine = np.repeat(np.arange(classes), test_per_class)
    write_cifar100(directory, rng.integers(0, 256, (len(train_fine), 32, 32, 3), dtype=np.uint8),
                   train_fine, rng.integers(0, 256, (len(test_fine), 32, 32, 3), dtype=np.uint8),
                   test_fine, [f"class{i}" for i in range(classes)])


def write_tiny_imagenet(directory, classes=10, train_per_class=10, val_per_class=2, seed=0):
    """A tiny-imagenet-200.zip of `classes` wnids with random 64 x 64 JPEGs."""
    rng = np.random.default_rng(seed)
    wnids = [f"n{i:08d}" for i in range(classes)]
    root = "tiny-imagenet-200/"
    with zipfile.ZipFile(os.path.join(directory, "tiny-imagenet-200.zip"), "w") as z:
        z.writestr(root + "wnids.txt", "\n".join(wnids) + "\n")
        lines = []
        for c, w in enumerate(wnids):
            for i in range(train_per_class):
                z.writestr(f"{root}train/{w}/images/{w}_{i}.JPEG",
                           jpeg(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
            for i in range(val_per_class):
                name = f"val_{c * val_per_class + i}.JPEG"
                z.writestr(f"{root}val/images/{name}",
                           jpeg(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
                lines.append(f"{name}\t{w}\t0\t0\t63\t63")
        z.writestr(root + "val/val_annotations.txt", "\n".join(lines) + "\n")
    return wnids
