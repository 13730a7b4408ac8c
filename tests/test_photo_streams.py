"""La-MAML's CIFAR-100 and TinyImageNet streams: the augmentation on known images, the class
split, the resumable batch order, the networks, and a whole run on small archives in the
published formats."""

import numpy as np
import pytest
import tensorflow as tf

from photo_archives import write_cifar100_classes, write_tiny_imagenet
from wtl_tf.continual import streams
from wtl_tf.data import photo_augment
from wtl_tf.errors import DataError

PLAIN = photo_augment.PhotoProtocol(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def test_crop_pads_with_zeros_and_cuts_at_the_offset():
    image = np.arange(1, 17, dtype=np.float32).reshape(1, 4, 4, 1)
    images = np.repeat(image, 3, axis=0)
    out = photo_augment.crop(images, [[1, 1], [0, 0], [2, 1]], padding=1).numpy()[..., 0]
    np.testing.assert_array_equal(out[0], image[0, ..., 0])  # the centre: the image itself
    expected = np.zeros((4, 4), np.float32)
    expected[1:, 1:] = image[0, :3, :3, 0]  # top-left corner: shifted down and right
    np.testing.assert_array_equal(out[1], expected)
    expected = np.zeros((4, 4), np.float32)
    expected[:3, :] = image[0, 1:, :, 0]  # one row lower, same columns
    np.testing.assert_array_equal(out[2], expected)


def test_augment_is_a_crop_of_the_padded_image_or_its_mirror_and_seeded():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    out = photo_augment.augment(images, tf.constant([3, 4], tf.int64), PLAIN).numpy()
    padded = np.pad(images / 255.0, [(0, 0), (4, 4), (4, 4), (0, 0)])
    flips = 0
    for i in range(len(images)):
        found = [(r, c, f) for r in range(9) for c in range(9) for f in (0, 1)
                 if np.allclose(out[i], (padded[i, r:r + 8, c:c + 8][:, ::-1] if f else
                                         padded[i, r:r + 8, c:c + 8]), atol=1e-6)]
        assert found, f"image {i} is no crop of its padded original"
        flips += all(f for _, _, f in found)
    assert 16 <= flips <= 48  # p = 0.5 of 64
    again = photo_augment.augment(images, tf.constant([3, 4], tf.int64), PLAIN).numpy()
    other = photo_augment.augment(images, tf.constant([3, 5], tf.int64), PLAIN).numpy()
    np.testing.assert_array_equal(out, again)
    assert not np.allclose(out, other)


def test_brightness_scales_each_image_by_one_factor_within_the_jitter():
    protocol = photo_augment.PhotoProtocol((0.0,) * 3, (1.0,) * 3, padding=0,
                                           brightness=63 / 255)
    images = np.full((400, 4, 4, 3), 128, np.uint8)
    out = photo_augment.augment(images, tf.constant([0, 1], tf.int64), protocol).numpy()
    factors = out[:, 0, 0, 0] / (128 / 255)
    np.testing.assert_allclose(out, np.broadcast_to(factors[:, None, None, None] * (128 / 255),
                                                    out.shape), rtol=1e-5)
    low, high = 1 - 63 / 255, 1 + 63 / 255
    assert factors.min() >= low - 1e-6 and factors.max() <= high + 1e-6
    assert factors.min() < low + 0.02 and factors.max() > high - 0.02  # uniform over it
    bright = np.full((50, 4, 4, 3), 250, np.uint8)  # clipped at 1
    assert photo_augment.augment(bright, tf.constant([0, 1], tf.int64),
                                 protocol).numpy().max() <= 1.0


def test_normalize_uses_the_reference_statistics():
    pixel = np.array([[[[255, 0, 128]]]], np.uint8)
    out = photo_augment.normalize(pixel, photo_augment.CIFAR100).numpy()[0, 0, 0]
    mean, std = np.array(photo_augment.CIFAR100.mean), np.array(photo_augment.CIFAR100.std)
    np.testing.assert_allclose(out, (np.array([1.0, 0.0, 128 / 255]) - mean) / std, rtol=1e-6)


def _photo_arrays(classes=10, train_per_class=10, test_per_class=2, size=8):
    rng = np.random.default_rng(1)
    train_y = np.repeat(np.arange(classes), train_per_class)
    test_y = np.repeat(np.arange(classes), test_per_class)
    return ((rng.integers(0, 256, (len(train_y), size, size, 3), dtype=np.uint8), train_y),
            (rng.integers(0, 256, (len(test_y), size, size, 3), dtype=np.uint8), test_y))


def test_split_photos_learns_disjoint_classes_in_a_seeded_order():
    train, test = _photo_arrays()
    stream = streams.split_photos("split_cifar100", train, test, photo_augment.CIFAR100, seed=3)
    assert len(stream.tasks) == 2 and stream.classes == 10
    assert sorted(stream.class_order) == list(range(10))
    assert stream.class_order.tolist() != list(range(10))  # a random order (seed 3)
    np.testing.assert_array_equal(stream.class_task, np.arange(10) // 5)
    for t, task in enumerate(stream.tasks):
        assert sorted(set(task.train_y)) == list(range(5 * t, 5 * t + 5))
        assert len(task.train_y) == 5 * 9  # 10% of each class held out for validation
        assert task.train_x.dtype == np.uint8
        for label in range(5 * t, 5 * t + 5):  # images come from the original class
            original = stream.class_order[label]
            own = {x.tobytes() for x in train[0][train[1] == original]}
            assert all(x.tobytes() in own for x in task.train_x[task.train_y == label])
            expected = photo_augment.normalize(test[0][test[1] == original],
                                               photo_augment.CIFAR100).numpy()
            np.testing.assert_allclose(task.test_x[task.test_y == label], expected, rtol=1e-6)
    same = streams.split_photos("split_cifar100", train, test, photo_augment.CIFAR100, seed=3)
    np.testing.assert_array_equal(same.class_order, stream.class_order)
    with pytest.raises(DataError, match="do not split into tasks of 5"):
        streams.split_photos("split_cifar100", *_photo_arrays(classes=7),
                             photo_augment.CIFAR100)


def test_photo_batches_are_augmented_normalised_and_resume_at_any_batch():
    train, test = _photo_arrays()
    task = streams.split_photos("split_cifar100", train, test, photo_augment.CIFAR100).tasks[0]
    batches = [(x.numpy(), y.numpy()) for x, y in task.train_batches(10, epochs=2)]
    assert [len(y) for _, y in batches] == [10, 10, 10, 10, 5] * 2  # no batch spans passes
    assert batches[0][0].dtype == np.float32
    assert batches[0][0].min() < 0.0  # normalised, not [0, 1]
    # a resumed stream skips to its batch and sees the same images and labels
    for k in (3, 7):
        x, y = next(iter(task.train_batches(10, epochs=2).skip(k)))
        np.testing.assert_array_equal(x.numpy(), batches[k][0])
        np.testing.assert_array_equal(y.numpy(), batches[k][1])
    # the second pass is a new augmentation of a new order, not a replay of the first
    assert not np.allclose(batches[0][0], batches[5][0])


@pytest.mark.parametrize("stream,shape,hidden", [("split_cifar100", (32, 32, 3), 320),
                                                  ("split_tiny_imagenet", (64, 64, 3), 640)])
def test_pc_cnn_gives_2560_features_on_both_photo_streams(stream, shape, hidden):
    from wtl_tf.config import ExperimentConfig
    from wtl_tf.continual import building as run

    config = ExperimentConfig(algorithm="la_maml", stream=stream).resolved()
    fake = streams.Stream(stream, [streams.ContinualTask(
        0, "t", np.zeros((1, *shape), np.uint8), np.zeros(1, np.int64),
        np.zeros((1, *shape), np.float32), np.zeros(1, np.int64))], 100)
    model = run.build_la_maml(config, fake).model
    flatten = [layer for layer in model.layers if "flatten" in layer.name][0]
    assert flatten.output.shape[-1] == 2560
    assert model.get_layer("dense1").units == hidden


def test_split_cifar100_runs_from_the_published_archive(tmp_path):
    """A whole run on a small cifar-100-python.tar.gz: 15 training images per task, so a pass
    ends with a smaller batch (one compiled update per chunk count)."""
    from wtl_tf import experiment
    from wtl_tf.config import ExperimentConfig

    write_cifar100_classes(tmp_path, train_per_class=3, test_per_class=1)
    config = ExperimentConfig(algorithm="la_maml", stream="split_cifar100", stream_tasks=1,
                              pc_cnn_channels=4, glances=1, data_dir=str(tmp_path),
                              output_dir=str(tmp_path / "run"), tensorboard=False).resolved()
    assert (config.memories, config.inner_lr, config.meta_lr) == (200, 0.1, 0.25)
    results, _ = experiment.run(config)
    stream_results = results["continual"]
    assert np.asarray(stream_results["R"]).shape == (1, 1)
    assert stream_results["stream_steps"] == 2  # batches of 10 and 5
    assert 0.0 <= stream_results["retained_accuracy"] <= 1.0


def test_split_tiny_imagenet_stream_from_the_published_zip(tmp_path):
    from wtl_tf.config import ExperimentConfig
    from wtl_tf.continual import building as run

    write_tiny_imagenet(tmp_path, classes=10, train_per_class=10, val_per_class=2)
    config = ExperimentConfig(algorithm="la_maml", stream="split_tiny_imagenet",
                              data_dir=str(tmp_path)).resolved()
    assert (config.memories, config.glances, config.meta_lr) == (400, 2, 0.4)
    stream = run.build_stream(config, None)
    assert [len(t.train_y) for t in stream.tasks] == [45, 45]  # 10% held out
    assert [len(t.test_y) for t in stream.tasks] == [10, 10]  # the validation images
    x, _ = next(iter(stream.tasks[0].train_batches(10)))
    assert x.shape == (10, 64, 64, 3) and x.dtype == tf.float32
