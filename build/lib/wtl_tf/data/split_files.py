"""Split files: which classes (and which rotations of them) form train/validation/test.

Two formats are read:
- JSON (the shipped files in wtl_tf/data/splits/): {"splits": {"train": [names]...},
  "rotations": {"train": [0, 90, 180, 270], ...}, "archives": [...], "description": ...}
- a directory of train.txt / val.txt / test.txt, one class per line, optionally with a
  rotation suffix, e.g. `Korean/character01/rot090` (the prototypical-networks format).
A split is never drawn at run time: membership is whatever the file says.
"""

import dataclasses
import json
import os
import re

from wtl_tf.errors import DataError

SPLIT_NAMES = ("train", "validation", "test")
SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "splits")
_TEXT_FILES = {"train": "train.txt", "validation": "val.txt", "test": "test.txt"}
_ROTATION = re.compile(r"^(.*)/rot(\d{3})$")


@dataclasses.dataclass
class Split:
    name: str
    classes: dict  # split name -> [(class name, rotation in degrees)]
    archives: tuple = ()
    description: str = ""

    def class_names(self, split):
        return sorted({name for name, _ in self.classes[split]})


def shipped_splits():
    return sorted(f[:-5] for f in os.listdir(SHIPPED_DIR) if f.endswith(".json"))


def read_split_json(spec, key):
    """The JSON split file `spec` (a shipped name or a path) with train/validation/test lists
    under `key`; DataError naming the file and the fix otherwise."""
    shipped = os.path.join(SHIPPED_DIR, f"{spec}.json")
    path = shipped if os.path.exists(shipped) else spec
    try:
        with open(path) as f:
            payload = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read split file {spec!r} ({e}); give a shipped split "
                        f"({', '.join(shipped_splits())}) or the path of a JSON file") from None
    missing = [s for s in SPLIT_NAMES if s not in payload.get(key, {})]
    if missing:
        raise DataError(f"split file {spec!r} lacks the split(s) {missing}; it needs "
                        f"{list(SPLIT_NAMES)} under {key!r}")
    return payload


def _from_json(path):
    payload = read_split_json(path, "splits")
    splits, rotations = payload["splits"], payload.get("rotations", {})
    classes = {s: [(name, int(r)) for name in splits[s] for r in rotations.get(s, [0])]
               for s in SPLIT_NAMES}
    return Split(os.path.basename(path)[:-5], classes, tuple(payload.get("archives", ())),
                 payload.get("description", ""))


def _from_text_dir(path):
    classes = {}
    for split, filename in _TEXT_FILES.items():
        file = os.path.join(path, filename)
        if not os.path.exists(file):
            raise DataError(f"split directory {path!r} has no {filename}; it needs "
                            f"{', '.join(_TEXT_FILES.values())}")
        entries = []
        with open(file) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                match = _ROTATION.match(line)
                entries.append((match.group(1), int(match.group(2))) if match else (line, 0))
        classes[split] = entries
    return Split(os.path.basename(os.path.normpath(path)), classes)


def load_split(spec):
    """`spec`: a shipped split name, a .json path, or a directory of train/val/test.txt."""
    shipped = os.path.join(SHIPPED_DIR, f"{spec}.json")
    if os.path.exists(shipped):
        split = _from_json(shipped)
    elif os.path.isdir(spec):
        split = _from_text_dir(spec)
    elif os.path.isfile(spec):
        split = _from_json(spec)
    else:
        raise DataError(f"unknown split {spec!r}: not a shipped split ({', '.join(shipped_splits())}), "
                        "a JSON file or a directory of train/val/test.txt")
    check_disjoint(split)
    return split


def check_disjoint(split):
    """No class may appear on two sides of a split (rotations of one character included)."""
    seen = {}
    for name in SPLIT_NAMES:
        for cls in split.class_names(name):
            if cls in seen and seen[cls] != name:
                raise DataError(f"class {cls!r} is in both the {seen[cls]} and {name} splits of "
                                f"{split.name!r}; fix the split file")
            seen[cls] = name
    for name in SPLIT_NAMES:
        for _, rotation in split.classes[name]:
            if rotation % 90:
                raise DataError(f"split {split.name!r} asks for a {rotation}-degree rotation; "
                                "only multiples of 90 are supported")
