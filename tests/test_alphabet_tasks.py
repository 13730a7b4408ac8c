"""Omniglot alphabets as 20-way tasks (WarpGrad's protocol), on the shared archives."""

import json

import numpy as np
import pytest

from wtl_tf.data.alphabet_tasks import AlphabetTasks
from wtl_tf.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def tasks(omniglot_dir):
    return AlphabetTasks(ways=20, shots=15, queries=5, seed=0, data_dir=omniglot_dir,
                         augment="none")  # the images themselves, to compare


def test_split_has_the_documented_tasks(tasks):
    assert tasks.tasks == {"train": 20, "validation": 5, "test": 2}  # 5 alphabets x 4 rotations
    assert tasks.input_shape == (28, 28, 1) and tasks.outputs == 20


def test_episodes_are_one_alphabet_with_train_and_held_out_drawers(tasks, omniglot_small):
    batch = next(iter(tasks.episodes("test", 4, raw=True)))
    index = {name: i for i, name in enumerate(omniglot_small.names)}
    for b in range(4):
        classes = [omniglot_small.names[c] for c in batch["class_ids"][b].numpy()]
        alphabets = {c.split("/")[0] for c in classes}
        assert len(set(classes)) == 20 and len(alphabets) == 1
        assert alphabets <= {"Korean", "Sanskrit"}
        np.testing.assert_array_equal(batch["support_y"][b], np.repeat(np.arange(20), 15))
        np.testing.assert_array_equal(batch["query_y"][b], np.repeat(np.arange(20), 5))
        for label, name in enumerate(classes):  # first 15 drawers train, last 5 held out
            pictures = omniglot_small.images[omniglot_small.offsets[index[name]]:][:20]
            np.testing.assert_array_equal(batch["support_x"][b][label * 15:(label + 1) * 15],
                                          pictures[:15])
            np.testing.assert_array_equal(batch["query_x"][b][label * 5:(label + 1) * 5],
                                          pictures[15:])
    assert {int(t) for t in batch["task"]} == {0, 1}


def test_training_tasks_rotate_the_whole_alphabet(tasks, omniglot_small):
    batch = next(iter(tasks.episodes("train", 20, raw=True)))
    index = {name: i for i, name in enumerate(omniglot_small.names)}
    seen = set()
    for b in range(20):
        task = int(batch["task"][b])
        turns = task % 4  # entries are alphabet-major, rotations 0, 90, 180, 270
        name = omniglot_small.names[int(batch["class_ids"][b][0])]
        original = omniglot_small.images[omniglot_small.offsets[index[name]]]
        np.testing.assert_array_equal(batch["support_x"][b][0], np.rot90(original, turns))
        seen.add(task)
    assert seen == set(range(20))


def test_impossible_alphabet_tasks_are_rejected(omniglot_dir, tmp_path):
    split = tmp_path / "tagalog.json"
    split.write_text(json.dumps({"archives": ["images_background_small2"], "alphabets": {
        "train": ["Greek"], "validation": ["Greek"], "test": ["Tagalog"]}}))
    with pytest.raises(DataError, match="Tagalog.*17 characters"):
        AlphabetTasks(ways=20, shots=15, queries=5, seed=0, data_dir=omniglot_dir,
                      split=str(split))
    with pytest.raises(ConfigError, match="--queries=5"):
        AlphabetTasks(ways=5, shots=15, queries=3, seed=0, data_dir=omniglot_dir)
    with pytest.raises(ConfigError, match="must leave held-out images"):
        AlphabetTasks(ways=5, shots=20, queries=1, seed=0, data_dir=omniglot_dir)
