"""OSAKA's non-stationary few-shot stream (Caccia et al. 2020) and its online metrics.

Stream (docs/continual.md, the offline protocol): at step 0 and, with
probability 1 - p at every later step, a mode is drawn — the pretraining alphabets' characters
(probability .5), new alphabets ("ood1", .25), or other alphabets inverted and rotated by 90
degrees ("ood2", .25) — with N classes of it; a redraw counts as a switch even when the mode
repeats. Every step's batch is N x K images drawn with replacement from those classes,
labelled 0..N-1. The schedule is drawn once from the seed and every batch from (seed, step),
so any step can be regenerated on its own (a resumed stream sees the same batches).
With `ood` (the `osaka_mnist` stream, as the OSAKA paper's Omniglot / MNIST / Fashion-MNIST
stream) the two out-of-distribution modes are MNIST's and Fashion-MNIST's ten classes
instead, shown as they are (light on black, not inverted or turned) and scaled to [0, 1]
like Omniglot, or, with `raw_ood_pixels`, left at 0-255 as OSAKA's code feeds them.

Metrics: the online cumulative accuracy (1/T) sum_t acc_t, overall and per mode, and a
boundary detector's precision and recall against the stream's true switches.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from wtl_tf.data.class_images import ClassImages
from wtl_tf.data.generated import generated
from wtl_tf.errors import ConfigError, DataError

PRETRAIN_ALPHABETS = ("Korean", "Japanese_(katakana)", "Sanskrit", "Latin")
OOD1_ALPHABETS = ("Balinese", "Early_Aramaic")
OOD2_ALPHABETS = ("Greek", "Tagalog")
MODES = ("pretrain", "ood1", "ood2")
MODE_PROBABILITIES = (0.5, 0.25, 0.25)


@dataclasses.dataclass
class OsakaStream:
    """The schedule (mode and classes of every step) and a batch generator."""

    class_images: object
    classes_by_mode: dict  # mode -> list of class indices into that mode's images
    modes: np.ndarray  # [T] mode index per step
    classes: np.ndarray  # [T, N] class indices per step
    switches: np.ndarray  # [T] bool: the task was redrawn at this step (step 0 included)
    shots: int
    seed: int
    ood_images: dict = None  # mode -> ClassImages of MNIST / Fashion-MNIST (osaka_mnist)
    raw_ood_pixels: bool = False

    def __len__(self):
        return len(self.modes)

    def dataset(self, start=0):
        """The stream as tf.data from step `start` on: (x, y) per step."""
        x, _ = self.batch(0)
        return generated(lambda: (self.batch(t) for t in range(start, len(self))), (
            tf.TensorSpec([None, *x.shape[1:]], tf.float32), tf.TensorSpec([None], tf.int64)),
            len(self) - start)

    def batch(self, t):
        """(x float32 [N*K, H, W, 1] in [0, 1], y int64 [N*K]) of step t."""
        rng = np.random.default_rng([self.seed, 7, t])
        mode = MODES[self.modes[t]]
        external = self.ood_images is not None and mode in self.ood_images
        ci = self.ood_images[mode] if external else self.class_images
        divisor = 1.0 if external and self.raw_ood_pixels else 255.0
        xs, ys = [], []
        for label, c in enumerate(self.classes[t]):
            picks = ci.offsets[c] + rng.integers(0, ci.counts[c], size=self.shots)
            xs.append(ci.images[picks].astype(np.float32) / divisor)
            ys += [label] * self.shots
        x = np.concatenate(xs)
        if mode == "ood2" and not external:  # inverted and rotated by 90 degrees
            x = np.rot90(1.0 - x, k=1, axes=(1, 2)).copy()
        order = rng.permutation(len(ys))
        return x[order], np.asarray(ys, np.int64)[order]


def osaka_stream(class_images, steps=10_000, p=0.98, ways=10, shots=5, seed=0, ood=None,
                 raw_ood_pixels=False):
    """The OSAKA-style stream over the two small Omniglot archives (see the module doc);
    `ood`: {"ood1": MNIST, "ood2": Fashion-MNIST} as ClassImages (mnist_classes) to use
    instead of the held-out alphabets."""
    by_alphabet = {}
    for c, name in enumerate(class_images.names):
        by_alphabet.setdefault(name.split("/")[0], []).append(c)
    groups = {"pretrain": PRETRAIN_ALPHABETS, "ood1": OOD1_ALPHABETS, "ood2": OOD2_ALPHABETS}
    classes_by_mode = {}
    for mode, images in (ood or {}).items():
        if mode not in ("ood1", "ood2"):
            raise ConfigError(f"ood replaces the modes ood1 and ood2, not {mode!r}")
        if images.images.shape[1:] != class_images.images.shape[1:]:
            raise DataError(f"the {mode} images are {images.images.shape[1:]}, the Omniglot "
                            f"images {class_images.images.shape[1:]}; load both at 28 x 28")
        classes_by_mode[mode] = list(range(len(images.names)))
        del groups[mode]
    for mode, alphabets in groups.items():
        missing = [a for a in alphabets if a not in by_alphabet]
        if missing:
            raise DataError(f"the OSAKA stream's {mode} mode needs the alphabets {missing}, "
                            "which the loaded archives lack (use the two small archives or the "
                            "full background set)")
        classes_by_mode[mode] = [c for a in alphabets for c in by_alphabet[a]]
    for mode, classes in classes_by_mode.items():
        if len(classes) < ways:
            raise DataError(f"{mode} has {len(classes)} classes, fewer than --ways={ways}")
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"the stationarity probability p must be in [0, 1], got {p}")
    rng = np.random.default_rng([seed, 3])
    modes = np.zeros(steps, np.int64)
    classes = np.zeros((steps, ways), np.int64)
    switches = np.zeros(steps, bool)
    for t in range(steps):
        if t == 0 or rng.random() >= p:
            switches[t] = True
            modes[t] = rng.choice(len(MODES), p=MODE_PROBABILITIES)
            classes[t] = rng.choice(classes_by_mode[MODES[modes[t]]], size=ways, replace=False)
        else:
            modes[t], classes[t] = modes[t - 1], classes[t - 1]
    return OsakaStream(class_images, classes_by_mode, modes, classes, switches, shots, seed,
                       ood_images=ood, raw_ood_pixels=raw_ood_pixels)


def mnist_classes(images, labels, dataset="mnist"):
    """ClassImages of an IDX dataset's digits / garments (wtl_tf.data.idx.load's arrays),
    one class per label."""
    return ClassImages.from_groups({f"{dataset}/{int(k)}": images[labels == k]
                                    for k in np.unique(labels)})


# What a stream step records (ContinualMAML.stream_step's logs): the history the metrics read.
RECORD_FIELDS = ("accuracy", "loss_pre", "loss_post", "boundary", "weight", "updated")
_FLAGS = ("boundary", "updated")


def as_record(logs):
    """A step's record as Python numbers, from its logs (tensors or numbers)."""
    return {k: bool(logs[k]) if k in _FLAGS else float(logs[k]) for k in RECORD_FIELDS}


def history_arrays(history):
    """A history (list of records) as one float64 array per field, for a checkpoint."""
    return {f"history_{k}": np.array([r[k] for r in history], np.float64)
            for k in RECORD_FIELDS}


def history_from_arrays(state):
    """What history_arrays wrote, as a list of records."""
    columns = [state[f"history_{k}"] for k in RECORD_FIELDS]
    return [{k: bool(v) if k in _FLAGS else float(v) for k, v in zip(RECORD_FIELDS, values)}
            for values in zip(*columns)]


def online_accuracy(history, modes):
    """(1/T) sum_t acc_t overall and per mode (step 0's accuracy counts as 0, as OSAKA's)."""
    accuracy = np.array([r["accuracy"] for r in history], np.float64)
    accuracy[0] = 0.0
    modes = np.asarray(modes[:len(accuracy)])
    return {"overall": float(accuracy.mean()),
            **{MODES[m]: float(accuracy[modes == m].mean()) for m in np.unique(modes)}}


def boundary_scores(history, switches):
    """Precision and recall of the detected boundaries against the true switches (step 0,
    where nothing can be detected, excluded)."""
    detected = np.array([r["boundary"] for r in history])[1:]
    true = np.asarray(switches[:len(history)])[1:]
    hits = int(np.sum(detected & true))
    precision = hits / int(np.sum(detected)) if detected.any() else float("nan")
    recall = hits / int(np.sum(true)) if true.any() else float("nan")
    return {"precision": precision, "recall": recall, "detected": int(detected.sum()),
            "switches": int(true.sum())}
