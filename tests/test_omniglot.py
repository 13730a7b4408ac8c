"""Omniglot on the real archives, through the loader users use."""

import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from wtl_tf.data import omniglot
from wtl_tf.data.class_images import episode_source
from wtl_tf.data.registry import task_distribution
from wtl_tf.data.split_files import SPLIT_NAMES, load_split
from wtl_tf.episodes import EpisodeSampler
from wtl_tf.errors import DataError

# From ../shared/data/omniglot/README.md
README_ALPHABETS = {
    "images_background_small1": {"Balinese": 24, "Early_Aramaic": 22, "Greek": 24, "Korean": 40,
                                 "Latin": 26},
    "images_background_small2": {"Greek": 24, "Japanese_(katakana)": 47, "Latin": 26,
                                 "Sanskrit": 42, "Tagalog": 17},
}


def _alphabet_counts(class_images):
    counts = {}
    for name in class_images.names:
        alphabet = name.split("/")[0]
        counts[alphabet] = counts.get(alphabet, 0) + 1
    return counts


def test_archives_match_the_readme(omniglot_dir, omniglot_small):
    for archive, alphabets in README_ALPHABETS.items():
        images = omniglot.load(omniglot_dir, (archive,), allow_download=False)
        assert _alphabet_counts(images) == alphabets
        assert len(images.names) == {"images_background_small1": 136,
                                     "images_background_small2": 156}[archive]
        assert images.images.shape[0] == 20 * len(images.names)
    # Greek and Latin are in both archives: the union is deduplicated.
    assert len(omniglot_small.names) == 242 and omniglot_small.images.shape == (4840, 28, 28, 1)
    assert set(omniglot_small.counts) == {20}


def test_images_are_the_archive_pngs_resized(omniglot_dir, omniglot_small):
    path = os.path.join(omniglot_dir, "images_background_small1.zip")
    with zipfile.ZipFile(path) as z:
        files = sorted(n for n in z.namelist() if "/Korean/character05/" in n and n.endswith(".png"))
        raw = [tf.io.decode_png(z.read(f), channels=1) for f in files]
    assert len(raw) == 20 and raw[0].shape == (105, 105, 1)
    row = omniglot_small.index()["Korean/character05"]
    ours = omniglot_small.images[omniglot_small.offsets[row]:omniglot_small.offsets[row] + 20]
    expected = [tf.image.resize(tf.cast(r, tf.float32), [28, 28], "area", antialias=True)
                for r in raw]
    np.testing.assert_allclose(ours.astype(np.float32), np.round(np.stack(expected)), atol=1)
    # black strokes on white: mostly background (255) with dark strokes
    assert ours.mean() > 200 and ours.min() < 50


def test_small_alphabet_split_is_disjoint_and_complete(omniglot_small):
    split = load_split("omniglot_small_alphabets")
    names = {s: set(split.class_names(s)) for s in SPLIT_NAMES}
    assert len(names["test"]) == 57
    assert {n.split("/")[0] for n in names["test"]} == {"Korean", "Tagalog"}
    assert len(names["train"]) == 155 and len(names["validation"]) == 30
    assert not (names["train"] & names["test"]) and not (names["train"] & names["validation"])
    assert not (names["validation"] & names["test"])
    assert set().union(*names.values()) == set(omniglot_small.names)
    assert len(split.classes["train"]) == 4 * 155  # rotations are extra classes
    assert {r for _, r in split.classes["train"]} == {0, 90, 180, 270}
    assert {r for _, r in split.classes["test"]} == {0}


def test_shipped_full_splits_have_the_published_sizes():
    chars = load_split("omniglot_full_characters")
    assert [len(chars.class_names(s)) for s in SPLIT_NAMES] == [1028, 172, 423]
    assert len(chars.classes["train"]) == 4 * 1028
    alphabets = load_split("omniglot_full_alphabets")
    assert sum(len(alphabets.class_names(s)) for s in SPLIT_NAMES) == 1623
    assert len(alphabets.class_names("test")) == 659


@pytest.fixture(scope="module")
def small_train_source(omniglot_small):
    split = load_split("omniglot_small_alphabets")
    return episode_source(omniglot_small, split.classes["train"], "train")


def _episodes(source, n, ways=5, shots=2, queries=3, seed=0):
    sampler = EpisodeSampler(source, ways, shots, queries, seed=seed)
    return [{k: v.numpy() for k, v in b.items()} for b in sampler.dataset(4).take(n)]


def test_episodes_have_distinct_classes_disjoint_support_query_and_proper_labels(
        small_train_source):
    ways, shots, queries = 5, 2, 3
    for batch in _episodes(small_train_source, 25, ways, shots, queries):
        for t in range(4):
            assert len(set(batch["class_ids"][t])) == ways
            np.testing.assert_array_equal(batch["support_y"][t], np.repeat(np.arange(ways), shots))
            np.testing.assert_array_equal(batch["query_y"][t], np.repeat(np.arange(ways), queries))
            for ids in batch["image_ids"][t]:  # per class: K support + Q query images
                assert len(set(ids)) == shots + queries
            # rotations of one character are different classes; never two of one image set
            # with the same rotation in a task
            assert len({(int(small_train_source.offsets[c]), int(small_train_source.rotations[c]))
                        for c in batch["class_ids"][t]}) == ways


def test_each_class_gets_its_own_rotation(small_train_source):
    """Recomputes every image of an episode from the stored characters with np.rot90 and the
    rotation of *that* class; a rotation applied to the wrong class would not match."""
    shots, queries = 2, 3
    rotated_seen = set()
    for batch in _episodes(small_train_source, 10, 5, shots, queries, seed=3):
        for t in range(4):
            for i, c in enumerate(batch["class_ids"][t]):
                k = int(small_train_source.rotations[c])
                rotated_seen.add(k)
                base = small_train_source.images[batch["image_ids"][t][i]]
                expected = np.rot90(base, k, axes=(1, 2)).astype(np.float32) / 255.0
                support = batch["support_x"][t][i * shots:(i + 1) * shots]
                query = batch["query_x"][t][i * queries:(i + 1) * queries]
                np.testing.assert_array_equal(support, expected[:shots])
                np.testing.assert_array_equal(query, expected[shots:])
    assert rotated_seen == {0, 1, 2, 3}


def test_episode_streams_are_seeded_and_resumable(small_train_source):
    sampler = EpisodeSampler(small_train_source, 5, 1, 2, seed=7)
    first = [b["image_ids"].numpy() for b in sampler.dataset(2).take(3)]
    again = [b["image_ids"].numpy() for b in sampler.dataset(2).take(3)]
    resumed = next(iter(sampler.dataset(2, start_batch=2)))["image_ids"].numpy()
    other = next(iter(EpisodeSampler(small_train_source, 5, 1, 2, seed=8).dataset(2)))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[2], resumed)
    assert not np.array_equal(first[0], other["image_ids"].numpy())


def test_impossible_episodes_are_rejected_with_clear_errors(omniglot_dir):
    with pytest.raises(DataError, match="60-way episodes need at least 60 classes, but the validation split has 30"):
        task_distribution("omniglot", ways=60, shots=1, queries=1, seed=0, data_dir=omniglot_dir,
                          split="omniglot_small_alphabets")
    with pytest.raises(DataError, match="has 20 images but 5 shots \\+ 16 queries need 21"):
        task_distribution("omniglot", ways=5, shots=5, queries=16, seed=0, data_dir=omniglot_dir,
                          split="omniglot_small_alphabets")


def test_wrong_checksum_missing_and_corrupt_archives(omniglot_dir, tmp_path):
    name = "images_background_small1.zip"
    tampered = tmp_path / name
    data = bytearray((open(os.path.join(omniglot_dir, name), "rb")).read())
    data[1000] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{name} has md5 .*expected e704a628.*delete it"):
        omniglot.archive_paths(str(tmp_path), ["images_background_small1"])
    with pytest.raises(DataError, match="images_background_small2.zip does not exist"):
        omniglot.archive_paths(str(tmp_path), ["images_background_small2"], allow_download=False)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(bytes(data[:5000]))
    with pytest.raises(DataError, match="truncated.zip is not a readable zip archive"):
        omniglot.load_archives([str(truncated)])


def test_tfds_source_gives_the_same_classes_as_the_archives(omniglot_dir, omniglot_small):
    """The TFDS path, fed by a stand-in for tfds.load built from a real archive (no network):
    3-channel 105x105 images with TFDS' alphabet/alphabet_char_id features."""
    path = os.path.join(omniglot_dir, "images_background_small2.zip")
    with zipfile.ZipFile(path) as z:
        files = sorted(n for n in z.namelist() if n.endswith(".png"))
        alphabets = sorted({f.split("/")[1] for f in files})
        images, alphabet_ids, char_ids = [], [], []
        for f in files:
            _, alphabet, character, _ = f.split("/")
            images.append(tf.image.grayscale_to_rgb(tf.io.decode_png(z.read(f), channels=1)))
            alphabet_ids.append(alphabets.index(alphabet))
            char_ids.append(int(character[len("character"):]) - 1)

    class Info:
        features = {"alphabet": type("Label", (), {"names": alphabets})()}

    def fake_tfds_load(split):
        ds = tf.data.Dataset.from_tensor_slices({"image": tf.stack(images),
                                                 "alphabet": alphabet_ids,
                                                 "alphabet_char_id": char_ids})
        return ds, Info()

    via_tfds = omniglot.load_tfds(splits=("small2",), builder_loader=fake_tfds_load)
    assert len(via_tfds.names) == 156
    index = omniglot_small.index()
    for name in ("Tagalog/character03", "Greek/character24", "Japanese_(katakana)/character47"):
        row, ref = via_tfds.index()[name], index[name]
        a = via_tfds.images[via_tfds.offsets[row]:via_tfds.offsets[row] + 20]
        b = omniglot_small.images[omniglot_small.offsets[ref]:omniglot_small.offsets[ref] + 20]
        np.testing.assert_array_equal(a, b)


def test_within_alphabet_episodes_draw_every_class_from_one_alphabet(omniglot_dir):
    """--episode_classes=within_alphabet: the 15 classes of each test episode share one
    held-out alphabet (Korean has 40 characters, Tagalog 17: both are drawn), while the
    default episodes mix alphabets; at 20-way only Korean qualifies."""
    def alphabets_per_episode(episode_classes, ways=15, batches=6):
        tasks = task_distribution("omniglot", ways=ways, shots=1, queries=1, seed=0,
                                  data_dir=omniglot_dir, split="omniglot_small_alphabets",
                                  episode_classes=episode_classes)
        names = tasks.samplers["test"].source.names
        found = []
        for batch in tasks.episodes("test", 4, num_batches=batches):
            for classes in batch["class_ids"].numpy():
                assert len(set(classes)) == ways
                found.append({names[c].split("/")[0] for c in classes})
        return found

    within = alphabets_per_episode("within_alphabet")
    assert all(len(a) == 1 for a in within)
    assert set().union(*within) == {"Korean", "Tagalog"}  # the alphabet is drawn per episode
    assert any(len(a) > 1 for a in alphabets_per_episode("any"))
    assert all(a == {"Korean"} for a in alphabets_per_episode("within_alphabet", ways=20))
    tasks = task_distribution("omniglot", ways=6, shots=1, queries=1, seed=0,
                              data_dir=omniglot_dir, split="omniglot_small_alphabets",
                              episode_classes="within_alphabet")
    tasks.episodes("test", 2)  # Korean and Tagalog have 6 characters
    with pytest.raises(DataError, match="no group of the validation split has 6 classes"):
        tasks.episodes("validation", 2)  # 5 held-out characters per alphabet


def test_a_finite_episode_set_knows_its_length(omniglot_dir):
    """Keras reads the cardinality: unknown, it warns "ran out of data" on every validation
    set and its first pass has no length."""
    import tensorflow as tf

    from wtl_tf.episodes import episode_indices

    indices, per_replica = episode_indices(4, start_batch=5, num_batches=3, replicas=(0, 2, 2))
    assert per_replica == 2 and int(indices.cardinality()) == 12
    assert list(indices.as_numpy_iterator()) == list(range(20, 32))  # batches 5, 6, 7
    tasks = task_distribution("omniglot", ways=5, shots=1, queries=1, seed=0,
                              data_dir=omniglot_dir, split="omniglot_small_alphabets")
    assert int(tasks.episodes("validation", 4, num_batches=3).cardinality()) == 3
    assert int(tasks.episodes("train", 4).cardinality()) == tf.data.UNKNOWN_CARDINALITY
