"""The loaders of the originals users download for continual learning, on small files
written in the exact published formats (no network): MNIST / Fashion-MNIST IDX (gz and
raw), CIFAR-100's python pickles in their tar.gz, TinyImageNet's zip."""

import gzip
import os
import struct
import zipfile

import numpy as np
import pytest

from photo_archives import jpeg, write_cifar100
from wtl_tf.data import cifar100, idx, tiny_imagenet
from wtl_tf.errors import DataError


def write_idx(directory, images, labels, prefix, compress):
    opener = gzip.open if compress else open
    suffix = ".gz" if compress else ""
    with opener(os.path.join(directory, f"{prefix}-images-idx3-ubyte{suffix}"), "wb") as f:
        f.write(struct.pack(">IIII", 2051, *images.shape) + images.tobytes())
    with opener(os.path.join(directory, f"{prefix}-labels-idx1-ubyte{suffix}"), "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + labels.tobytes())


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_idx_files_load_exactly(tmp_path, compress):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    train_y, test_y = np.arange(7, dtype=np.uint8) % 10, np.array([9, 0, 4], np.uint8)
    write_idx(tmp_path, train, train_y, "train", compress)
    write_idx(tmp_path, test, test_y, "t10k", compress)
    x, y, tx, ty = idx.load(str(tmp_path), "fashion_mnist")
    np.testing.assert_array_equal(x[..., 0], train)
    np.testing.assert_array_equal(tx[..., 0], test)
    assert y.tolist() == train_y.tolist() and ty.tolist() == [9, 0, 4]
    assert x.shape == (7, 28, 28, 1) and y.dtype == np.int64


def test_idx_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(DataError, match="neither train-images-idx3-ubyte nor .*gz"):
        idx.load(str(tmp_path), "mnist")
    images = np.zeros((2, 28, 28), np.uint8)
    write_idx(tmp_path, images, np.zeros(2, np.uint8), "train", False)
    write_idx(tmp_path, images, np.zeros(2, np.uint8), "t10k", False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated or corrupt"):
        idx.load(str(tmp_path), "mnist")
    path.write_bytes(struct.pack(">IIII", 2049, 2, 28, 28) + images.tobytes())
    with pytest.raises(DataError, match="magic 2049, not 2051"):
        idx.load(str(tmp_path), "mnist")


def test_cifar100_pickles_load_with_channel_planes_in_place(tmp_path):
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    test = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    train[0, 0, 0] = (255, 0, 7)  # a known pixel: red 255, green 0, blue 7
    write_cifar100(tmp_path, train, [0, 1, 2, 3, 4, 5], test, [5, 0],
                   [f"class{i}" for i in range(6)])
    x, y, tx, ty, names = cifar100.load(str(tmp_path))
    np.testing.assert_array_equal(x, train)
    assert tuple(x[0, 0, 0]) == (255, 0, 7)
    np.testing.assert_array_equal(tx, test)
    assert y.tolist() == [0, 1, 2, 3, 4, 5] and ty.tolist() == [5, 0]
    assert names[5] == "class5"
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(DataError, match="not a readable tar.gz"):
        cifar100.load(str(tmp_path))


def test_tiny_imagenet_zip_regroups_validation_by_class(tmp_path):
    wnids = ["n01443537", "n01629819"]
    colours = {wnids[0]: (200, 30, 30), wnids[1]: (30, 30, 200)}
    with zipfile.ZipFile(tmp_path / "tiny-imagenet-200.zip", "w") as z:
        root = "tiny-imagenet-200/"
        z.writestr(root + "wnids.txt", "\n".join(wnids) + "\n")
        for w in wnids:
            for i in range(3):
                z.writestr(f"{root}train/{w}/images/{w}_{i}.JPEG",
                           jpeg(np.full((64, 64, 3), colours[w], np.uint8)))
        lines = []
        for i, w in enumerate([wnids[1], wnids[0], wnids[1]]):  # interleaved classes
            z.writestr(f"{root}val/images/val_{i}.JPEG",
                       jpeg(np.full((64, 64, 3), colours[w], np.uint8)))
            lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
        z.writestr(root + "val/val_annotations.txt", "\n".join(lines) + "\n")
    x, y, tx, ty, names = tiny_imagenet.load(str(tmp_path), max_per_class=2)
    assert names == wnids and x.shape == (4, 64, 64, 3) and y.tolist() == [0, 0, 1, 1]
    assert ty.tolist() == [0, 1, 1]  # regrouped by class
    assert np.abs(tx[0].astype(int) - colours[wnids[0]]).max() <= 3  # JPEG round trip
    assert np.abs(tx[1].astype(int) - colours[wnids[1]]).max() <= 3
    (tmp_path / "tiny-imagenet-200.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="not a readable zip"):
        tiny_imagenet.load(str(tmp_path))


def test_rotated_and_permuted_mnist_streams_from_idx_files_through_train_py(tmp_path):
    """The MNIST benchmarks' streams from IDX files (tiny ones written here): each task its
    own training digits, the same test digits turned or permuted per task; a train.py run
    on them produces the accuracy matrix."""
    from wtl_tf import experiment
    from wtl_tf.config import ExperimentConfig
    from wtl_tf.continual import streams

    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    write_idx(tmp_path, train, (np.arange(40) % 10).astype(np.uint8), "train", True)
    write_idx(tmp_path, test, (np.arange(12) % 10).astype(np.uint8), "t10k", True)
    x, y, tx, ty = idx.load(str(tmp_path), "mnist")
    rotated = streams.mnist_tasks((x, y), (tx, ty), "rotated", tasks=3, train_per_task=20,
                                  test_per_task=10, seed=0)
    permuted = streams.mnist_tasks((x, y), (tx, ty), "permuted", tasks=3, train_per_task=20,
                                   test_per_task=10, seed=0)
    for stream in (rotated, permuted):
        assert [t.train_x.shape for t in stream.tasks] == [(20, 784)] * 3
        np.testing.assert_array_equal(stream.tasks[0].test_y, stream.tasks[2].test_y)
    # a permutation task is a pixel reordering of the same test digits
    first, last = permuted.tasks[0].test_x, permuted.tasks[2].test_x
    np.testing.assert_allclose(np.sort(first, axis=1), np.sort(last, axis=1))
    assert not np.allclose(first, last)
    config = ExperimentConfig(algorithm="c_maml", stream="permuted_mnist", stream_tasks=2,
                              data_dir=str(tmp_path), output_dir=str(tmp_path / "run"),
                              tensorboard=False, glances=1)
    with pytest.raises(DataError, match="fewer than 1000 / 1000 per task"):
        experiment.run(config)


def _write_digits(directory, seed):
    """IDX files of ten classes (4 training, 1 test image each), classes told apart by
    brightness: class k's pixels are all 20 k + 10."""
    os.makedirs(directory, exist_ok=True)
    labels = np.repeat(np.arange(10, dtype=np.uint8), 4)
    images = np.repeat((20 * labels + 10).astype(np.uint8)[:, None, None], 28, 1).repeat(28, 2)
    write_idx(directory, images, labels, "train", seed % 2 == 0)
    write_idx(directory, images[::4], labels[::4], "t10k", seed % 2 == 0)


def test_osaka_mnist_stream_draws_its_ood_modes_from_mnist_and_fashion_mnist(
        tmp_path, omniglot_small):
    """osaka_mnist: ood1 batches are MNIST digits, ood2 Fashion-MNIST, neither inverted nor
    turned, in [0, 1] (or 0-255 with raw_ood_pixels); the pretraining mode stays Omniglot."""
    from wtl_tf.continual import osaka

    for name, seed in (("mnist", 0), ("fashion", 1)):
        _write_digits(tmp_path / name, seed)
    ood = {mode: osaka.mnist_classes(*idx.load(str(tmp_path / name), dataset)[:2], dataset)
           for mode, name, dataset in (("ood1", "mnist", "mnist"),
                                       ("ood2", "fashion", "fashion_mnist"))}
    stream = osaka.osaka_stream(omniglot_small, steps=300, p=0.5, seed=4, ood=ood)
    raw = osaka.osaka_stream(omniglot_small, steps=300, p=0.5, seed=4, ood=ood,
                             raw_ood_pixels=True)
    assert stream.classes_by_mode["ood1"] == list(range(10))
    assert len(stream.classes_by_mode["pretrain"]) == 155
    for mode in ("ood1", "ood2"):
        t = int(np.flatnonzero(stream.modes == osaka.MODES.index(mode))[0])
        x, y = stream.batch(t)
        # every image is one whole class of constant brightness, its class as labelled
        values = x.reshape(50, -1)
        assert np.all(values.min(axis=1) == values.max(axis=1))
        original = np.rint(values[:, 0] * 255 - 10).astype(int) // 20
        np.testing.assert_array_equal(original, stream.classes[t][y])
        np.testing.assert_allclose(raw.batch(t)[0], x * 255, rtol=1e-6)
    t = int(np.flatnonzero(stream.modes == 0)[0])
    np.testing.assert_array_equal(stream.batch(t)[0], raw.batch(t)[0])  # Omniglot unchanged
    small = {"ood1": osaka.mnist_classes(np.zeros((3, 28, 28, 1), np.uint8), np.arange(3))}
    with pytest.raises(DataError, match="ood1 has 3 classes, fewer than --ways=10"):
        osaka.osaka_stream(omniglot_small, steps=5, ood=small)


def test_osaka_mnist_is_built_from_its_directories_which_are_refused_elsewhere(
        tmp_path, omniglot_dir, omniglot_small):
    from wtl_tf.config import ExperimentConfig
    from wtl_tf.continual import osaka, run
    from wtl_tf.errors import ConfigError

    for name, seed in (("mnist", 0), ("fashion", 1)):
        _write_digits(tmp_path / name, seed)
    common = dict(algorithm="continual_maml", stream_steps=300, stationarity=0.5,
                  data_dir=omniglot_dir)
    with pytest.raises(ConfigError, match="mnist_dir"):
        ExperimentConfig(stream="osaka_omniglot", mnist_dir=str(tmp_path / "mnist"),
                         **common).resolved()
    config = ExperimentConfig(stream="osaka_mnist", mnist_dir=str(tmp_path / "mnist"),
                              fashion_mnist_dir=str(tmp_path / "fashion"), raw_ood_pixels=True,
                              **common).resolved()
    stream = run.build_stream(config, omniglot_small)
    assert len(stream) == 300 and stream.raw_ood_pixels
    assert stream.ood_images["ood1"].names[0] == "mnist/0"
    assert stream.ood_images["ood2"].names[0] == "fashion_mnist/0"
    t = int(np.flatnonzero(stream.modes == osaka.MODES.index("ood1"))[0])
    assert stream.batch(t)[0].max() > 1.0  # raw 0-255 pixels
    config.mnist_dir = str(tmp_path / "none")
    with pytest.raises(DataError, match="neither train-images-idx3-ubyte"):
        run.build_stream(config, omniglot_small)


def test_every_stream_of_the_flag_has_a_builder():
    from wtl_tf.continual.building import STREAM_BUILDERS
    from wtl_tf.continual.protocol import STREAMS

    assert set(STREAM_BUILDERS) == set(STREAMS) - {"sequential_sine"}
