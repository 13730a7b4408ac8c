"""Generates the shipped Omniglot split files (run once; the JSON outputs are committed).

    python datasets/make_omniglot_splits.py

Character names follow the archives' layout `<Alphabet>/characterNN`; the alphabet sizes
below are those of the original release (30 background alphabets, 964 characters; 20
evaluation alphabets, 659 characters). The loader checks every listed character against
the archives it reads, so a wrong name fails loudly instead of shrinking a split.
Shuffles use a fixed numpy seed here, never at run time.
"""

import json
import os

import numpy as np

# The shipped split files are package data of the library (wtl_tf.data.split_files reads them).
SPLITS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "wtl_tf", "data", "splits")

BACKGROUND = {
    "Alphabet_of_the_Magi": 20, "Anglo-Saxon_Futhorc": 29, "Arcadian": 26, "Armenian": 41,
    "Asomtavruli_(Georgian)": 40, "Balinese": 24, "Bengali": 46,
    "Blackfoot_(Canadian_Aboriginal_Syllabics)": 14, "Braille": 26, "Burmese_(Myanmar)": 34,
    "Cyrillic": 33, "Early_Aramaic": 22, "Futurama": 26, "Grantha": 43, "Greek": 24,
    "Gujarati": 48, "Hebrew": 22, "Inuktitut_(Canadian_Aboriginal_Syllabics)": 16,
    "Japanese_(hiragana)": 52, "Japanese_(katakana)": 47, "Korean": 40, "Latin": 26,
    "Malay_(Jawi_-_Arabic)": 40, "Mkhedruli_(Georgian)": 41, "N_Ko": 33,
    "Ojibwe_(Canadian_Aboriginal_Syllabics)": 14, "Sanskrit": 42, "Syriac_(Estrangelo)": 23,
    "Tagalog": 17, "Tifinagh": 55,
}
EVALUATION = {
    "Angelic": 20, "Atemayar_Qelisayer": 26, "Atlantean": 26, "Aurek-Besh": 26, "Avesta": 26,
    "Ge_ez": 26, "Glagolitic": 45, "Gurmukhi": 45, "Kannada": 41, "Keble": 26, "Malayalam": 47,
    "Manipuri": 40, "Mongolian": 30, "Old_Church_Slavonic_(Cyrillic)": 45, "Oriya": 46,
    "Sylheti": 28, "Syriac_(Serto)": 23, "Tengwar": 25, "Tibetan": 42, "ULOG": 26,
}
SMALL1 = ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"]
SMALL2 = ["Greek", "Japanese_(katakana)", "Latin", "Sanskrit", "Tagalog"]
ALL_ROTATIONS = [0, 90, 180, 270]


def characters(alphabets, sizes):
    return [f"{a}/character{i:02d}" for a in sorted(alphabets) for i in range(1, sizes[a] + 1)]


def write(name, payload):
    path = os.path.join(SPLITS_DIR, name)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
        f.write("\n")
    print(path, {k: len(v) for k, v in payload.get("splits", payload.get("alphabets")).items()})


def small_alphabets():
    """Alphabet-level split of the two `small` archives: test on Korean and Tagalog (57
    characters); train on the other 6 alphabets with rotations, minus 5 characters per
    alphabet held out (unrotated) for validation and checkpoint selection."""
    rng = np.random.default_rng(0)
    test_alphabets = ["Korean", "Tagalog"]
    train_alphabets = sorted(set(SMALL1 + SMALL2) - set(test_alphabets))
    train, validation = [], []
    for alphabet in train_alphabets:
        names = characters([alphabet], BACKGROUND)
        held = set(rng.choice(len(names), size=5, replace=False).tolist())
        validation += [n for i, n in enumerate(names) if i in held]
        train += [n for i, n in enumerate(names) if i not in held]
    write("omniglot_small_alphabets.json", {
        "description": small_alphabets.__doc__.strip().replace("\n   ", ""),
        "archives": ["images_background_small1", "images_background_small2"],
        "rotations": {"train": ALL_ROTATIONS, "validation": [0], "test": [0]},
        "splits": {"train": train, "validation": validation,
                   "test": characters(test_alphabets, BACKGROUND)},
    })


def full_characters():
    """Character-level split of the full release with the sizes of Vinyals et al. (1028
    train / 172 validation / 423 test characters, every split with 90-degree rotations as
    extra classes). Membership is a fixed seeded draw, not Vinyals' own lists: to use those,
    pass their directory of train/val/test.txt files as --split."""
    names = characters(BACKGROUND, BACKGROUND) + characters(EVALUATION, EVALUATION)
    order = np.random.default_rng(0).permutation(len(names))
    picked = [names[i] for i in order]
    write("omniglot_full_characters.json", {
        "description": full_characters.__doc__.strip().replace("\n   ", ""),
        "archives": ["images_background", "images_evaluation"],
        "rotations": {"train": ALL_ROTATIONS, "validation": ALL_ROTATIONS,
                      "test": ALL_ROTATIONS},
        "splits": {"train": sorted(picked[:1028]), "validation": sorted(picked[1028:1200]),
                   "test": sorted(picked[1200:])},
    })


def full_alphabets():
    """Alphabet-level split of the full release (Lake et al.): the 30 background alphabets
    for training (5 of them held out for validation), the 20 evaluation alphabets for test."""
    validation_alphabets = ["Bengali", "Futurama", "Hebrew", "Korean", "Tagalog"]
    train_alphabets = sorted(set(BACKGROUND) - set(validation_alphabets))
    write("omniglot_full_alphabets.json", {
        "description": full_alphabets.__doc__.strip().replace("\n   ", ""),
        "archives": ["images_background", "images_evaluation"],
        "rotations": {"train": ALL_ROTATIONS, "validation": [0], "test": [0]},
        "splits": {"train": characters(train_alphabets, BACKGROUND),
                   "validation": characters(validation_alphabets, BACKGROUND),
                   "test": characters(EVALUATION, EVALUATION)},
    })


def warpgrad_alphabets():
    """Alphabet tasks for WarpGrad (one alphabet, or one rotation of it, is a 20-way task;
    alphabets need at least 20 characters). Small archives: train on Balinese, Early Aramaic,
    Greek, Japanese (katakana) and Latin with rotations (20 tasks), validate on the held-out
    drawers of those alphabets, test on Korean and Sanskrit (Tagalog has 17 characters). Full
    release: train on the background alphabets with >= 20 characters (5 of them held out for
    validation), test on the 20 evaluation alphabets."""
    small = sorted(a for a in set(SMALL1 + SMALL2) if BACKGROUND[a] >= 20)
    test = ["Korean", "Sanskrit"]
    train = [a for a in small if a not in test]
    write("warpgrad_omniglot_small.json", {
        "description": warpgrad_alphabets.__doc__.strip().replace("\n   ", ""),
        "archives": ["images_background_small1", "images_background_small2"],
        "rotations": {"train": ALL_ROTATIONS, "validation": [0], "test": [0]},
        "alphabets": {"train": train, "validation": train, "test": test},
    })
    usable = sorted(a for a, n in BACKGROUND.items() if n >= 20)
    validation = ["Bengali", "Futurama", "Hebrew", "Korean", "Syriac_(Estrangelo)"]
    write("warpgrad_omniglot_full.json", {
        "description": warpgrad_alphabets.__doc__.strip().replace("\n   ", ""),
        "archives": ["images_background", "images_evaluation"],
        "rotations": {"train": ALL_ROTATIONS, "validation": [0], "test": [0]},
        "alphabets": {"train": [a for a in usable if a not in validation],
                      "validation": validation, "test": sorted(EVALUATION)},
    })


if __name__ == "__main__":
    assert sum(BACKGROUND.values()) == 964 and sum(EVALUATION.values()) == 659
    small_alphabets()
    full_characters()
    full_alphabets()
    warpgrad_alphabets()
