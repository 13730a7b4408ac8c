"""miniImageNet (both published formats) and class-folder datasets, on small generated files."""

import csv
import hashlib
import json
import os
import pickle
import sys

import numpy as np
import pytest
import tensorflow as tf

from wtl_tf.data import mini_imagenet
from wtl_tf.data.registry import task_distribution
from wtl_tf.errors import ConfigError, DataError

SPLITS = {"train": ["n01532829", "n01558993", "n01704323", "n01749939", "n01770081"],
          "val": ["n01855672", "n02091244", "n02114548", "n02138441", "n02174001"],
          "test": ["n01930112", "n01981276", "n02099601", "n02110063", "n02110341"]}
PER_CLASS = 6


def _images(rng, n, size=84):
    """Smooth random images (upsampled 6x6 noise), so lossy JPEG/resizing keeps them close."""
    coarse = rng.uniform(0, 255, size=(n, 6, 6, 3)).astype(np.float32)
    return tf.cast(tf.image.resize(coarse, [size, size], "bilinear"), tf.uint8).numpy()


@pytest.fixture(scope="module")
def mini_pixels():
    rng = np.random.default_rng(0)
    return {wnid: _images(rng, PER_CLASS) for wnids in SPLITS.values() for wnid in wnids}


def write_csv_format(root, pixels, size=84):
    """Ravi & Larochelle layout: images/<wnid><8 digits>.jpg + {train,val,test}.csv."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    for split, wnids in SPLITS.items():
        with open(os.path.join(root, f"{split}.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["filename", "label"])
            for wnid in wnids:
                for i in range(PER_CLASS):
                    name = f"{wnid}{i + 1:08d}.jpg"
                    image = pixels[wnid][i]
                    if size != 84:
                        image = tf.cast(tf.image.resize(image, [size, size]), tf.uint8)
                    with open(os.path.join(root, "images", name), "wb") as out:
                        out.write(tf.io.encode_jpeg(image, quality=100).numpy())
                    writer.writerow([name, wnid])


def write_pickle_format(root, pixels):
    """mini-imagenet-cache-{split}.pkl: {'image_data': uint8 [n,84,84,3], 'class_dict'}."""
    os.makedirs(root, exist_ok=True)
    for split, wnids in SPLITS.items():
        data, class_dict = [], {}
        for wnid in wnids:
            class_dict[wnid] = list(range(len(data), len(data) + PER_CLASS))
            data.extend(pixels[wnid])
        with open(os.path.join(root, f"mini-imagenet-cache-{split}.pkl"), "wb") as f:
            pickle.dump({"image_data": np.stack(data), "class_dict": class_dict}, f)


def test_both_published_formats_load_the_same_dataset(tmp_path, mini_pixels):
    write_csv_format(tmp_path / "csv", mini_pixels, size=100)  # originals bigger than 84
    write_pickle_format(tmp_path / "pkl", mini_pixels)
    from_csv = mini_imagenet.load(str(tmp_path / "csv"))
    from_pkl = mini_imagenet.load(str(tmp_path / "pkl"))
    for split, key in (("train", "train"), ("validation", "val"), ("test", "test")):
        assert from_csv[split].names == sorted(SPLITS[key]) == from_pkl[split].names
        assert from_csv[split].images.shape == (5 * PER_CLASS, 84, 84, 3)
    wnid = SPLITS["train"][2]
    row = from_pkl["train"].index()[wnid]
    np.testing.assert_array_equal(
        from_pkl["train"].images[from_pkl["train"].offsets[row]:][:PER_CLASS], mini_pixels[wnid])
    # JPEG + resizing 84 -> 100 -> 84 is lossy but must stay close to the same pixels
    diff = np.abs(from_csv["train"].images.astype(int) - from_pkl["train"].images.astype(int))
    assert diff.mean() < 3 and np.percentile(diff, 99) < 20


def test_mini_imagenet_episodes_use_reference_normalisation(tmp_path, mini_pixels):
    write_pickle_format(tmp_path, mini_pixels)
    tasks = task_distribution("mini_imagenet", ways=5, shots=2, queries=3, seed=0,
                              data_dir=str(tmp_path), image_size=84)
    assert tasks.input_shape == (84, 84, 3) and tasks.outputs == 5
    batch = next(iter(tasks.episodes("test", 2)))
    assert batch["support_x"].shape == (2, 10, 84, 84, 3)
    assert batch["query_x"].shape == (2, 15, 84, 84, 3)
    sampler = tasks.samplers["test"]
    raw = sampler.source.images[batch["image_ids"][0, 0, 0].numpy()]
    expected = (raw / 255.0 - np.array(mini_imagenet.MEAN)) / np.array(mini_imagenet.STD)
    np.testing.assert_allclose(batch["support_x"][0, 0].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_missing_files_are_named(tmp_path, mini_pixels):
    write_csv_format(tmp_path, mini_pixels)
    os.remove(tmp_path / "val.csv")
    with pytest.raises(DataError, match="val.csv is missing"):
        mini_imagenet.load(str(tmp_path))
    write_csv_format(tmp_path, mini_pixels)
    os.remove(tmp_path / "images" / f"{SPLITS['test'][1]}00000003.jpg")
    with pytest.raises(DataError, match=f"{SPLITS['test'][1]}00000003.jpg is missing"):
        mini_imagenet.load(str(tmp_path))
    with pytest.raises(DataError, match="does not exist; pass --data_dir"):
        mini_imagenet.load(str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no miniImageNet files"):
        mini_imagenet.load(str(empty))


def test_corrupt_files_are_named(tmp_path, mini_pixels):
    write_csv_format(tmp_path / "csv", mini_pixels)
    broken = tmp_path / "csv" / "images" / f"{SPLITS['train'][0]}00000002.jpg"
    broken.write_bytes(broken.read_bytes()[:200])
    with pytest.raises(DataError, match=f"{broken.name} is not a decodable image"):
        mini_imagenet.load(str(tmp_path / "csv"))
    write_pickle_format(tmp_path / "pkl", mini_pixels)
    cache = tmp_path / "pkl" / "mini-imagenet-cache-val.pkl"
    cache.write_bytes(cache.read_bytes()[:1000])
    with pytest.raises(DataError, match="mini-imagenet-cache-val.pkl is not a readable"):
        mini_imagenet.load(str(tmp_path / "pkl"))


def test_wrong_checksum_is_named(tmp_path, mini_pixels):
    write_pickle_format(tmp_path, mini_pixels)
    good = hashlib.md5((tmp_path / "mini-imagenet-cache-train.pkl").read_bytes()).hexdigest()
    (tmp_path / "checksums.md5").write_text(
        f"{good}  mini-imagenet-cache-train.pkl\n{'0' * 32}  mini-imagenet-cache-test.pkl\n")
    with pytest.raises(DataError, match="mini-imagenet-cache-test.pkl has md5 .* expected 0000"):
        mini_imagenet.load(str(tmp_path))
    (tmp_path / "checksums.md5").write_text(f"{good}  mini-imagenet-cache-train.pkl\n")
    assert mini_imagenet.load(str(tmp_path))["train"].names == sorted(SPLITS["train"])


def test_more_ways_than_classes_is_rejected(tmp_path, mini_pixels):
    write_pickle_format(tmp_path, mini_pixels)
    with pytest.raises(DataError, match="6-way episodes need at least 6 classes"):
        task_distribution("mini_imagenet", ways=6, shots=1, queries=1, seed=0,
                          data_dir=str(tmp_path))


def test_class_folder_dataset_with_split_files(tmp_path):
    rng = np.random.default_rng(1)
    classes = [f"bird_{i:02d}" for i in range(9)]
    for name in classes:
        os.makedirs(tmp_path / "data" / name)
        for j in range(4):
            image = rng.integers(0, 256, size=(30 + j, 40, 3), dtype=np.uint8)
            encode = tf.io.encode_png if j % 2 else tf.io.encode_jpeg
            ext = "png" if j % 2 else "jpg"
            (tmp_path / "data" / name / f"{j}.{ext}").write_bytes(encode(image).numpy())
    split_dir = tmp_path / "split"
    split_dir.mkdir()
    for filename, members in (("train.txt", classes[:5]), ("val.txt", classes[5:7]),
                              ("test.txt", classes[7:])):
        (split_dir / filename).write_text("\n".join(members) + "\n")
    tasks = task_distribution("folder", ways=2, shots=1, queries=2, seed=0,
                              data_dir=str(tmp_path / "data"), split=str(split_dir),
                              image_size=32, channels=3)
    assert tasks.input_shape == (32, 32, 3)
    assert {s: tasks.samplers[s].source.num_classes for s in tasks.samplers} == {
        "train": 5, "validation": 2, "test": 2}
    batch = next(iter(tasks.episodes("train", 3)))
    assert batch["support_x"].shape == (3, 2, 32, 32, 3)
    assert 0.0 <= float(tf.reduce_min(batch["query_x"])) and float(tf.reduce_max(batch["query_x"])) <= 1.0

    (split_dir / "test.txt").write_text("bird_07\nbird_99\n")
    with pytest.raises(DataError, match="bird_99 .* does not exist"):
        task_distribution("folder", ways=2, shots=1, queries=2, seed=0,
                          data_dir=str(tmp_path / "data"), split=str(split_dir), image_size=32)
    (split_dir / "test.txt").write_text("bird_00\nbird_08\n")
    with pytest.raises(DataError, match="bird_00' is in both the train and test splits"):
        task_distribution("folder", ways=2, shots=1, queries=2, seed=0,
                          data_dir=str(tmp_path / "data"), split=str(split_dir), image_size=32)


def write_class_folders(root, classes, images=4, seed=1):
    rng = np.random.default_rng(seed)
    for name in classes:
        os.makedirs(root / name)
        for j in range(images):
            image = rng.integers(0, 256, size=(30 + j, 40, 3), dtype=np.uint8)
            (root / name / f"{j}.png").write_bytes(tf.io.encode_png(image).numpy())


def test_cross_domain_records_are_the_meta_test_of_the_best_weights(tmp_path):
    """A run on one folder dataset, cross-domain tested on two others: results.json holds,
    for each, the meta-test of the learner's final (best-validation) weights on episodes of
    all its classes, the same numbers as meta-testing that learner directly."""
    from wtl_tf import experiment
    from wtl_tf.config import ExperimentConfig
    from wtl_tf.cross_domain import cross_domain_tasks
    from wtl_tf.meta_test import meta_test

    classes = [f"c{i}" for i in range(7)]
    write_class_folders(tmp_path / "data", classes)
    split = tmp_path / "split"
    split.mkdir()
    for filename, members in (("train.txt", classes[:3]), ("val.txt", classes[3:5]),
                              ("test.txt", classes[5:])):
        (split / filename).write_text("\n".join(members) + "\n")
    write_class_folders(tmp_path / "birds", [f"b{i}" for i in range(3)], seed=2)
    write_class_folders(tmp_path / "cars", [f"k{i}" for i in range(4)], seed=3)
    config = ExperimentConfig(
        algorithm="maml", dataset="folder", data_dir=str(tmp_path / "data"), split=str(split),
        ways=2, shots=1, queries=2, image_size=16, conv_channels=4, meta_batch_size=2,
        meta_iterations=2, eval_every=1, validation_tasks=2, test_tasks=4, inner_steps=1,
        inner_steps_eval=1, tensorboard=False, verbose=0, output_dir=str(tmp_path / "run"),
        cross_domain=(f"birds:{tmp_path / 'birds'}", f"cars:{tmp_path / 'cars'}")).resolved()
    results, learner = experiment.run(config)
    tasks = experiment.run_tasks(config)
    for name, count in (("birds", 3), ("cars", 4)):
        record = results["cross_domain"][name]
        assert record["classes"] == count and record["test_tasks"] == 4
        target = cross_domain_tasks(name, str(tmp_path / name), tasks, config)
        _, stats = meta_test(learner, target.episodes("test", config.eval_batch_size), 4)
        assert record["accuracy"]["mean"] == pytest.approx(stats["accuracy"][0])
        assert 0.0 <= record["accuracy"]["mean"] <= 1.0
    with pytest.raises(ConfigError, match="is not NAME:DIR"):
        ExperimentConfig(dataset="folder", split=str(split), cross_domain=("birds",)).resolved()


def test_shipped_cub_and_cars_splits_are_the_reference_sizes_and_disjoint():
    """The sparse-MAML reference's lists: CUB 100/50/50 classes in Chen et al.'s pattern
    (odd class ids train, ids = 2 mod 4 validation, = 0 mod 4 test), Cars 98/49/49 of 196,
    every name a folder name."""
    from wtl_tf.data.split_files import load_split

    cub = load_split("cub_sparse_maml")
    sizes = {s: len(cub.class_names(s)) for s in ("train", "validation", "test")}
    assert sizes == {"train": 100, "validation": 50, "test": 50}
    for split, residues in (("train", {1, 3}), ("validation", {2}), ("test", {0})):
        assert {int(name.split(".")[0]) % 4 for name in cub.class_names(split)} == residues
    cars = load_split("cars_sparse_maml")
    names = [n for s in ("train", "validation", "test") for n in cars.class_names(s)]
    assert [len(cars.class_names(s)) for s in ("train", "validation", "test")] == [98, 49, 49]
    assert len(set(names)) == 196 and not any("/" in n for n in names)
    assert "Ram C-V Cargo Van Minivan 2012" in cars.class_names("validation")


def test_cross_domain_with_a_split_tests_only_its_test_classes(tmp_path):
    from wtl_tf.cross_domain import check_sources, parse, test_classes

    write_class_folders(tmp_path / "birds", ["004.Ani", "008.Auklet", "001.Albatross"])
    split = tmp_path / "birds_split.json"
    split.write_text(json.dumps({"splits": {"train": ["001.Albatross"], "validation": [],
                                            "test": ["004.Ani", "008.Auklet"]}}))
    entry = f"birds:{tmp_path / 'birds'}:{split}"
    assert parse([entry]) == [("birds", str(tmp_path / "birds"), str(split))]
    assert test_classes("birds", str(tmp_path / "birds"), str(split)) == ["004.Ani", "008.Auklet"]
    assert test_classes("birds", str(tmp_path / "birds")) == ["001.Albatross", "004.Ani",
                                                             "008.Auklet"]
    with pytest.raises(DataError, match=r"lacks 50 of the 50 test classes of split "
                                         r"'cub_sparse_maml' .*CUB_200_2011/images"):
        check_sources([f"cub:{tmp_path / 'birds'}:cub_sparse_maml"])
    with pytest.raises(DataError, match="is not a directory of class folders"):
        check_sources([f"cub:{tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match="NAME:DIR or NAME:DIR:SPLIT"):
        parse(["cub:a:b:c"])


def test_stanford_cars_folders_are_box_crops_named_by_class(tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "datasets"))
    import stanford_cars_folders

    image = np.zeros((60, 100, 3), np.uint8)
    image[15:45, 20:70] = (200, 10, 30)  # the car: rows 15-44, columns 20-69
    box = np.array([15 / 60, 20 / 100, 45 / 60, 70 / 100], np.float32)
    examples = [{"image": image, "label": 1, "bbox": box}, {"image": image, "label": 0, "bbox": box},
                {"image": image, "label": 1, "bbox": box}]
    counts = stanford_cars_folders.write_class_folders(
        examples, ["Audi 100 Sedan 1994", "Ram C/V Cargo Van Minivan 2012"], str(tmp_path), size=12)
    assert counts == {"Ram C-V Cargo Van Minivan 2012": 2, "Audi 100 Sedan 1994": 1}
    crop = tf.io.decode_png((tmp_path / "Ram C-V Cargo Van Minivan 2012" / "00001.png")
                            .read_bytes()).numpy()
    assert crop.shape == (12, 12, 3)
    np.testing.assert_array_equal(crop, np.broadcast_to([200, 10, 30], (12, 12, 3)))
