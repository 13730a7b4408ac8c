"""StreamLearner: the Keras skeleton every continual learner shares.

A continual learner is a `keras.Model` whose `train_step(batch)` learns from one element of a
seeded `tf.data` stream (`observe`); `fit` drives it with the same callbacks as few-shot
meta-training (signals, progress, periodic checkpoints, the non-finite loss guard) plus the
stream's own (the accuracy matrix R, the mask trace, TensorBoard: wtl_tf.continual.callbacks).

Every shipped learner's step holds no host-side state (`traced = True`), so it learns in one
traced `train_step`: the La-MAML family's replay memory is tf.Variables and its draws come with
the stream; Continual-MAML's buffered and previous batches are tf.Variables; the warped sine's
SGD batches come with the stream. A learner that keeps host-side state between steps leaves
`traced` False and `compile` sets `run_eagerly`.

A subclass implements `learn(batch) -> logs` and the checkpoint, mask and export hooks below,
and decorates its __init__ with `keeps_config`, so that `save("x.keras")` and
`keras.models.load_model` round-trip it mid-stream.
"""

import functools
import inspect
import json
import os

import keras
import numpy as np
import tensorflow as tf

from wtl_tf.runtime import as_written


def keeps_config(init):
    """Decorates a stream learner's __init__: its arguments become the learner's Keras config
    (Keras objects serialised, arrays as lists), so `save("x.keras")` can rebuild it."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        init(self, *args, **kwargs)
        arguments = {k: v for k, v in bound.arguments.items() if k != "self"}
        object.__setattr__(self, "_init_arguments", arguments)  # (not a tracked attribute)
    return wrapper


def _serialised(value):
    if isinstance(value, keras.layers.Layer):
        return keras.saving.serialize_keras_object(value)
    if isinstance(value, (list, tuple)):
        return [_serialised(v) for v in value]
    if isinstance(value, dict):
        return {k: _serialised(v) for k, v in value.items()}
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return value


def _deserialised(value):
    if isinstance(value, dict) and {"class_name", "config"} <= set(value):
        return keras.saving.deserialize_keras_object(value)
    if isinstance(value, list):
        return [_deserialised(v) for v in value]
    return value


class StreamLearner(keras.Model):
    """A learner of a stream, one batch per `train_step`."""

    progress_unit, step_name = "stream step", "step"
    divergence_advice = ("lower the learning rates (--inner_lr, --meta_lr, --outer_lr) or clip "
                         "(--grad_clip_norm); the last checkpoint is kept")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)  # a .keras file finds every learner by its name
        keras.saving.register_keras_serializable(package="wtl_tf")(cls)

    traced = False  # True: train_step is traced (no host-side state between steps)

    def __init__(self, name):
        super().__init__(name=name)
        # Stream steps learned (restored from a checkpoint on resume); a variable, so that a
        # traced step counts too.
        self.stream_position = tf.Variable(tf.constant(0, tf.int64), trainable=False,
                                           name="stream_position")
        self.built = True

    @property
    def position(self):
        return int(self.stream_position.numpy())

    @position.setter
    def position(self, value):
        self.stream_position.assign(int(value))

    def compile(self):
        super().compile(optimizer=None, run_eagerly=not self.traced, jit_compile=False)

    def iteration(self):
        return self.position

    @as_written  # Keras would rewrite it with AutoGraph (wtl_tf.runtime.as_written)
    def train_step(self, batch):
        logs = self.learn(batch)
        self.stream_position.assign_add(1)
        return logs

    def learn(self, batch):
        """Learns from one stream element; returns its logs ({"loss": ...} at least)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_variables(self):
        """The TensorFlow variables a checkpoint holds."""
        raise NotImplementedError

    def checkpoint_objects(self):
        """Optimisers (name -> object) a checkpoint holds besides the variables."""
        return {}

    # ------------------------------------------------------------------ masks
    def mask_factors(self):
        """{variable path: the per-weight factor of its step} (rates or masked rates)."""
        return {}

    def mask_sparsity(self):
        """The fraction of masked weights, or None for a learner without masks."""
        return None

    def mask_changes(self):
        return None

    def mask_sparsity_record(self):
        """{"overall", "per_layer": {path: fraction shut}, "changed": {path: fraction open or
        shut differently from the start}, "entries": {path: mask entries}}, or None."""
        if self.mask_sparsity() is None:
            return None
        changed = self.mask_changes()
        factors = {path: np.asarray(f) for path, f in self.mask_factors().items()
                   if path in changed}
        return {"overall": self.mask_sparsity(),
                "per_layer": {path: float(np.mean(f == 0)) for path, f in factors.items()},
                "changed": changed, "entries": {path: int(f.size) for path, f in factors.items()}}

    # ------------------------------------------------------------------ export
    def slow_weights(self):
        """The network's weights as tensors, in the order `forward_with` takes them."""
        raise NotImplementedError

    def forward_with(self, weights, x):
        """Logits of the network with `weights` on `x`."""
        raise NotImplementedError

    def fast_weights(self, x, y):
        """The weights after the learner's adaptation to (x, y) (graph-safe)."""
        raise NotImplementedError

    def call(self, x, training=False):
        return self.forward_with(self.slow_weights(), x)

    # ------------------------------------------------------------------ Keras files
    # `save("x.keras")` / `keras.models.load_model`: the constructor's arguments (recorded by
    # keeps_config), every checkpoint variable and the host-side state (the stream position),
    # so that the loaded learner goes on as this one would.
    def get_config(self):
        if not hasattr(self, "_init_arguments"):
            raise NotImplementedError(f"{type(self).__name__} does not record its constructor "
                                      "arguments: decorate its __init__ with keeps_config")
        return {k: _serialised(v) for k, v in self._init_arguments.items()}

    @classmethod
    def from_config(cls, config):
        return cls(**{k: _deserialised(v) for k, v in config.items()})

    def get_compile_config(self):
        return {"compiled": True} if self.compiled else None  # (compile() has no arguments)

    def compile_from_config(self, config):
        self.compile()

    def _variables_of_children(self):
        """Variables that Keras writes to a .keras file through the learner's own layers and
        optimisers (the network, the links, an Adam on the masks)."""
        found, seen = [], set()

        def visit(value):
            if isinstance(value, (keras.layers.Layer, keras.optimizers.Optimizer)):
                if id(value) not in seen:
                    seen.add(id(value))
                    found.extend(value.weights if isinstance(value, keras.layers.Layer)
                                 else value.variables)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    visit(item)
            elif isinstance(value, dict):
                for item in value.values():
                    visit(item)

        for name, value in vars(self).items():
            if not name.startswith("_"):
                visit(value)
        return found

    def _own_variables(self):
        children = {i for v in self._variables_of_children()
                    for i in (id(v), id(getattr(v, "value", v)))}
        return [v for v in self.checkpoint_variables()
                if id(v) not in children and id(getattr(v, "value", v)) not in children]

    def save_own_variables(self, store):
        # Only what Keras does not already write through a child, so each variable is in the
        # file once.
        for i, variable in enumerate(self._own_variables()):
            store[f"checkpoint_{i}"] = variable.numpy()

    def load_own_variables(self, store):
        variables = self._own_variables()
        if len(store) != len(variables):
            raise ValueError(f"the file holds {len(store)} checkpoint variables, this "
                             f"{type(self).__name__} has {len(variables)}: it was saved from "
                             "a learner built differently")
        for i, variable in enumerate(variables):
            variable.assign(store[f"checkpoint_{i}"])

    def save_assets(self, directory):
        with open(os.path.join(directory, "position.json"), "w") as f:
            json.dump({"position": int(self.position)}, f)

    def load_assets(self, directory):
        with open(os.path.join(directory, "position.json")) as f:
            self.position = int(json.load(f)["position"])
