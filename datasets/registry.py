"""Task distributions by `--dataset` name: what the learner needs to know about each."""

import dataclasses

from datasets import sinusoid
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

    def episodes(self, split, meta_batch_size, start_batch=0, num_batches=None):
        return sinusoid.sinusoid_episodes(self.shots, self.queries, meta_batch_size, self.seed,
                                          split, start_batch, num_batches)


DATASETS = ("sinusoid",)


def task_distribution(name, *, ways, shots, queries, seed, data_dir=None, **options):
    """The task distribution `name` configured for N-way K-shot Q-query episodes."""
    if name == "sinusoid":
        return SinusoidTasks(shots=shots, queries=queries, seed=seed)
    raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
