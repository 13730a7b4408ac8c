"""Labelled images grouped by class: the common form every image dataset is loaded into."""

import dataclasses

import numpy as np

from wtl_tf.errors import DataError


@dataclasses.dataclass
class ClassImages:
    """uint8 images [total, H, W, C]; class c owns images[offsets[c]:offsets[c] + counts[c]]."""

    images: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray
    names: list

    @classmethod
    def from_groups(cls, groups):
        """`groups`: {class name: uint8 array [n, H, W, C]} (classes kept in sorted order)."""
        names = sorted(groups)
        if not names:
            raise DataError("no classes were found")
        counts = np.array([len(groups[n]) for n in names], np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        images = np.concatenate([groups[n] for n in names]).astype(np.uint8, copy=False)
        return cls(images, offsets, counts, names)

    def index(self):
        return {name: i for i, name in enumerate(self.names)}


@dataclasses.dataclass
class EpisodeSource:
    """The classes of one split: per class, which images (offset, count) and a rotation."""

    images: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray
    rotations: np.ndarray  # multiples of 90 degrees, as k in tf.image.rot90
    names: list

    @property
    def num_classes(self):
        return len(self.names)


def episode_source(class_images, entries, split_name="split"):
    """Selects `entries` [(class name, rotation degrees)] from `class_images`."""
    index = class_images.index()
    missing = sorted({name for name, _ in entries if name not in index})
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"{len(missing)} class(es) of the {split_name} split are not in the "
                        f"data: {shown}; check --data_dir and that the split file matches "
                        "the dataset")
    rotations = np.array([(r // 90) % 4 for _, r in entries], np.int32)
    if np.any(rotations) and class_images.images.shape[1] != class_images.images.shape[2]:
        raise DataError("rotated classes need square images; set --image_size")
    # Copy only this split's images (rotations of one class share them), so the splits of a
    # dataset together hold one copy of it.
    base = sorted({index[name] for name, _ in entries})
    counts = class_images.counts[base]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    images = np.concatenate([class_images.images[class_images.offsets[r]:
                                                 class_images.offsets[r] + class_images.counts[r]]
                             for r in base])
    position = {row: i for i, row in enumerate(base)}
    rows = [position[index[name]] for name, _ in entries]
    return EpisodeSource(images, offsets[rows], counts[rows], rotations,
                         [name if r == 0 else f"{name}/rot{r:03d}" for name, r in entries])
