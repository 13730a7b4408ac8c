"""Task distributions by `--dataset` name: what the learner needs to know about each."""

import dataclasses

from wtl_tf import settings
from wtl_tf.data import folder, mini_imagenet, omniglot, sinusoid
from wtl_tf.data.alphabet_tasks import AlphabetTasks
from wtl_tf.data.class_images import episode_source
from wtl_tf.data.split_files import SPLIT_NAMES, load_split
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
    support_transform = None  # no augmentation of the support examples

    def episodes(self, split, meta_batch_size, start_batch=0, num_batches=None, raw=False,
                 replicas=None):
        return sinusoid.sinusoid_episodes(self.shots, self.queries, meta_batch_size, self.seed,
                                          split, start_batch, num_batches, replicas)


class ImageTasks:
    """N-way classification episodes over the splits of a class-indexed image dataset."""

    loss = "cross_entropy"
    support_transform = None  # no per-draw augmentation (omniglot_alphabets has one)

    def __init__(self, name, sources, ways, shots, queries, seed, normalize, normalization,
                 groups=None):
        self.name, self.ways, self.seed = name, ways, seed
        self.outputs = ways
        self.input_shape = tuple(next(iter(sources.values())).images.shape[1:])
        # What a SavedModel must do to raw uint8 images (wtl_tf.export).
        self.preprocessing = {"image_size": self.input_shape[0], "channels": self.input_shape[2],
                              "normalization": normalization}
        groups = groups or {}
        self.samplers = {split: EpisodeSampler(source, ways, shots, queries, seed, split, normalize,
                                               groups.get(split))
                         for split, source in sources.items()}

    def episodes(self, split, meta_batch_size, start_batch=0, num_batches=None, raw=False,
                 replicas=None):
        return self.samplers[split].dataset(meta_batch_size, start_batch, num_batches, raw,
                                            replicas)


def split_sources(class_images, split):
    return {name: episode_source(class_images, split.classes[name], name) for name in SPLIT_NAMES}


def alphabet_groups(source):
    """One id per class of an Omniglot split: its alphabet (a rotated copy of an alphabet,
    `<alphabet>/<character>/rotNNN`, is an alphabet of its own)."""
    keys = [(name.split("/")[0], name.rsplit("/", 1)[-1] if "/rot" in name else "")
            for name in source.names]
    ids = {key: i for i, key in enumerate(sorted(set(keys)))}
    return [ids[key] for key in keys]


def omniglot_tasks(*, ways, shots, queries, seed, data_dir=None, split="omniglot_full_characters",
                   image_size=28, source="auto", episode_classes="any", **_):
    if episode_classes not in EPISODE_CLASSES:
        raise ConfigError(f"--episode_classes must be one of {EPISODE_CLASSES}, got "
                          f"{episode_classes!r}")
    if source not in ("auto", "archives", "tfds"):
        raise ConfigError(f"Omniglot --data_source must be archives or tfds, got {source!r}")
    split = load_split(split)
    if source == "tfds":
        images = omniglot.load_tfds(data_dir, image_size=image_size)
    else:
        names = split.archives or ("images_background", "images_evaluation")
        images = omniglot.load(data_dir, names, image_size)
    sources = split_sources(images, split)
    groups = ({name: alphabet_groups(s) for name, s in sources.items()}
              if episode_classes == "within_alphabet" else None)
    return ImageTasks("omniglot", sources, ways, shots, queries, seed, omniglot.normalize, "unit",
                      groups)


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


EPISODE_CLASSES = ("any", "within_alphabet")
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


# Each dataset's defaults for the settings a run leaves unset (wtl_tf.config fills them in).
DATASET_DEFAULTS = {
    # Finn et al. 2017 sinusoid regression: K = 10, alpha 0.01, 1 step, meta-batch 25, second
    # order. With one step of alpha = 0.01 the first-order approximation drifts (held-out MSE
    # 0.40 at 8k iterations, 0.81 at 20k, versus 0.24 -> 0.28 second order), so sinusoid
    # overrides the first-order reference default of the sparse-MAML family.
    "sinusoid": dict(model="mlp", order="second", ways=1, shots=10, queries=10, meta_batch_size=25,
                     meta_iterations=20000, inner_steps=1, inner_steps_eval=1, inner_lr=0.01,
                     outer_lr=1e-3, meta_lr=1e-3, eval_every=2000, validation_tasks=100,
                     vectorize_tasks=True),
    # Finn et al. 2017 Omniglot 5-way 1-shot: meta-batch 32, alpha 0.4, 1 step (10 at test).
    "omniglot": dict(model="conv4", ways=5, shots=1, queries=15, meta_batch_size=32,
                     meta_iterations=60000, inner_steps=1, inner_steps_eval=10, inner_lr=0.4,
                     outer_lr=1e-3, eval_every=1000, validation_tasks=500,
                     split="omniglot_full_characters", image_size=28),
    # The sparse-MAML reference's Conv4 5-shot run (docs/algorithms.md).
    "mini_imagenet": dict(model="conv4", ways=5, shots=5, queries=15, meta_batch_size=2,
                          meta_iterations=40000, inner_steps=35, inner_steps_eval=35,
                          inner_lr=0.25, outer_lr=1e-3, meta_lr=7.5e-3, eval_every=500,
                          validation_tasks=500, image_size=84),
    # WarpGrad's Omniglot protocol (docs/algorithms.md): an alphabet is a 20-way task, 15
    # training / 5 held-out images per character, 20 tasks per meta-batch, 100 inner steps on
    # batches of 128, inner and outer learning rates 0.1 with plain SGD, 1,000 meta-iterations.
    "omniglot_alphabets": dict(model="warpgrad_conv4", ways=20, shots=15, queries=5,
                               meta_batch_size=20, meta_iterations=1000, inner_steps=100,
                               inner_steps_eval=100, inner_lr=0.1, outer_optimizer="sgd",
                               outer_lr=0.1, meta_optimizer="sgd", meta_lr=0.1, task_batch=128,
                               eval_every=100, validation_tasks=20, test_tasks=40,
                               split="warpgrad_omniglot_small", image_size=28,
                               augment="affine"),
    "folder": dict(model="conv4", ways=5, shots=5, queries=15, meta_batch_size=4,
                   meta_iterations=20000, inner_steps=5, inner_steps_eval=10, inner_lr=0.1,
                   outer_lr=1e-3, eval_every=500, validation_tasks=300, image_size=84),
}

settings.declare(
    settings.Setting("dataset", "enum", "sinusoid", "the task distribution",
                     choices=tuple(DATASET_DEFAULTS), group="data",
                     reads=settings.few_shot, scope=settings.FEW_SHOT),
    settings.Setting("data_dir", "string", None, "where the dataset's files are (image "
                     "datasets); missing Omniglot archives are downloaded there (default "
                     "~/.cache/wtl_tf/omniglot)", group="data", resumable=True),
    settings.Setting("data_source", "enum", "auto", "Omniglot: archives (auto) or tfds; "
                     "miniImageNet: csv or pickle (auto-detected)",
                     choices=("auto", "archives", "tfds", "csv", "pickle"), group="data",
                     reads=settings.few_shot, scope=settings.FEW_SHOT),
    settings.Setting("image_channels", "integer", 3, "channels of --dataset=folder images (1 or "
                     "3)", group="data", reads=lambda c: c.dataset == "folder",
                     scope="--dataset=folder", low=1, high=3),
    settings.Setting("split", "string", None, "class split: a shipped name "
                     "(wtl_tf/data/splits/*.json), a JSON file or a directory of "
                     f"train/val/test.txt ({settings.UNSET_HELP})", group="data",
                     reads=settings.few_shot, scope=settings.FEW_SHOT),
    settings.Setting("image_size", "integer", None, "images are resized to this square size "
                     f"({settings.UNSET_HELP})", group="data",
                     reads=settings.few_shot, scope=settings.FEW_SHOT, low=1),
    settings.Setting("ways", "integer", None, f"classes per episode ({settings.UNSET_HELP})",
                     group="data",
                     reads=settings.either(settings.few_shot, settings.osaka_learner),
                     scope="few-shot runs; continual_maml (the stream's N)", low=1),
    settings.Setting("shots", "integer", None, "support examples per class "
                     f"({settings.UNSET_HELP})", group="data",
                     reads=settings.either(settings.few_shot, settings.osaka_learner),
                     scope="few-shot runs; continual_maml (the stream's K)", low=1),
    settings.Setting("augment", "enum", None, "random affine augmentation (the official "
                     "WarpGrad Omniglot protocol's: redrawn for a training image every time an "
                     "inner step draws it, once for each held-out image; unset: affine for "
                     "omniglot_alphabets)", choices=("none", "affine"), group="data",
                     reads=lambda c: settings.few_shot(c) and c.dataset == "omniglot_alphabets",
                     scope="--dataset=omniglot_alphabets"),
    settings.Setting("episode_classes", "enum", "any", "Omniglot: an episode's classes from "
                     "any alphabet, or all from one alphabet (within_alphabet: the original "
                     "one-shot benchmark's harder tasks)", choices=EPISODE_CLASSES,
                     group="data", reads=lambda c: settings.few_shot(c) and c.dataset == "omniglot",
                     scope="--dataset=omniglot"),
    settings.Setting("queries", "integer", None, "query examples per class "
                     f"({settings.UNSET_HELP})", group="data",
                     reads=settings.few_shot, scope=settings.FEW_SHOT, low=1),
)
