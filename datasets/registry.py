"""Task distributions by `--dataset` name: what the learner needs to know about each."""

import dataclasses

from datasets import folder, mini_imagenet, omniglot, sinusoid
from datasets.alphabet_tasks import AlphabetTasks
from datasets.class_images import episode_source
from datasets.split_files import SPLIT_NAMES, load_split
from wtl_tf.episodes import EpisodeSampler
from wtl_tf.errors import ConfigError


@dataclasses.dataclass
class SinusoidTasks:
    shots: int
    queries: int
    seed: int = 0
    name: str = "sinusoid"
    loss: str = "mse"
    input_shape: tuple = sinusoid.INPUT_SHAPE
    outputs: int = 1
    preprocessing = None  # float inputs, used as they are

    def episodes(self, split, meta_batch_size, start_batch=0, num_batches=None, raw=False,
                 replicas=None):
        return sinusoid.sinusoid_episodes(self.shots, self.queries, meta_batch_size, self.seed,
                                          split, start_batch, num_batches, replicas)


class ImageTasks:
    """N-way classification episodes over the splits of a class-indexed image dataset."""

    loss = "cross_entropy"

    def __init__(self, name, sources, ways, shots, queries, seed, normalize, normalization):
        self.name, self.ways, self.seed = name, ways, seed
        self.outputs = ways
        self.input_shape = tuple(sources["train"].images.shape[1:])
        # What a SavedModel must do to raw uint8 images (wtl_tf.export).
        self.preprocessing = {"image_size": self.input_shape[0], "channels": self.input_shape[2],
                              "normalization": normalization}
        self.samplers = {split: EpisodeSampler(source, ways, shots, queries, seed, split, normalize)
                         for split, source in sources.items()}

    def episodes(self, split, meta_batch_size, start_batch=0, num_batches=None, raw=False,
                 replicas=None):
        return self.samplers[split].dataset(meta_batch_size, start_batch, num_batches, raw,
                                            replicas)


def split_sources(class_images, split):
    return {name: episode_source(class_images, split.classes[name], name) for name in SPLIT_NAMES}


def omniglot_tasks(*, ways, shots, queries, seed, data_dir=None, split="omniglot_full_characters",
                   image_size=28, source="auto", **_):
    if source not in ("auto", "archives", "tfds"):
        raise ConfigError(f"Omniglot --data_source must be archives or tfds, got {source!r}")
    split = load_split(split)
    if source == "tfds":
        images = omniglot.load_tfds(data_dir, image_size=image_size)
    else:
        names = split.archives or ("images_background", "images_evaluation")
        images = omniglot.load(data_dir, names, image_size)
    return ImageTasks("omniglot", split_sources(images, split), ways, shots, queries, seed,
                      omniglot.normalize, "unit")


def mini_imagenet_tasks(*, ways, shots, queries, seed, data_dir=None, image_size=84,
                        source="auto", **_):
    splits = mini_imagenet.load(data_dir, image_size, source)
    sources = {name: episode_source(images, [(c, 0) for c in images.names], name)
               for name, images in splits.items()}
    return ImageTasks("mini_imagenet", sources, ways, shots, queries, seed,
                      mini_imagenet.normalize, "imagenet")


def folder_tasks(*, ways, shots, queries, seed, data_dir=None, split=None, image_size=84,
                 channels=3, **_):
    if not split:
        raise ConfigError("--dataset=folder needs --split: a JSON file or a directory of "
                          "train/val/test.txt naming the class folders of each split")
    split = load_split(split)
    names = [c for s in SPLIT_NAMES for c in split.class_names(s)]
    images = folder.load(data_dir, names, image_size, channels)
    return ImageTasks("folder", split_sources(images, split), ways, shots, queries, seed,
                      lambda x: x / 255.0, "unit")


IMAGE_DATASETS = {"omniglot": omniglot_tasks, "mini_imagenet": mini_imagenet_tasks,
                  "folder": folder_tasks, "omniglot_alphabets": AlphabetTasks}
DATASETS = ("sinusoid", *IMAGE_DATASETS)


def task_distribution(name, *, ways, shots, queries, seed, data_dir=None, **options):
    """The task distribution `name` configured for N-way K-shot Q-query episodes."""
    if name == "sinusoid":
        return SinusoidTasks(shots=shots, queries=queries, seed=seed)
    if name in IMAGE_DATASETS:
        return IMAGE_DATASETS[name](ways=ways, shots=shots, queries=queries, seed=seed,
                                    data_dir=data_dir, **options)
    raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
