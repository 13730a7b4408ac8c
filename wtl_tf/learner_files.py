"""A MetaLearner as a Keras model file: its config (the network, the chain of links, the
inner-loop options) and its compile config (both optimisers), so that `save("x.keras")` and
`keras.models.load_model` round-trip it."""

import dataclasses

import keras

from wtl_tf.inner_options import InnerLoopOptions
from wtl_tf.outer import MetaGradientUpdate


class KerasFile:
    """Mixed into MetaLearner: Keras' config hooks."""

    def get_config(self):
        """The network, the chain of links and the inner-loop options, as Keras objects and
        JSON: `save("x.keras")` and `keras.models.load_model` round-trip a learner whose
        options hold no Python callables and whose outer loop is the meta-gradient's."""
        options = dataclasses.asdict(self.inner.options)
        code = [name for name in ("loss", "support_transform")
                if options[name] is not None and not isinstance(options[name], str)]
        if code or type(self.outer) is not MetaGradientUpdate:
            what = (f"its {code[0]} is a Python function" if code else
                    f"its outer loop is {type(self.outer).__name__}")
            raise NotImplementedError(
                f"this MetaLearner cannot be kept in a .keras file ({what}, which a config "
                "cannot rebuild): export it (wtl_tf.export.export_learner) for use, or "
                "save_weights('PATH.weights.h5') into a learner built the same way")
        return {"name": self.name,
                "task_model": keras.saving.serialize_keras_object(self.task_model),
                "update_rule": keras.saving.serialize_keras_object(self.update_rule),
                "options": options, "outer_reduction": self._outer_reduction,
                "parallel_tasks": self.parallel_tasks,
                "vectorize_tasks": self._vectorize_tasks}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        task_model = keras.saving.deserialize_keras_object(config.pop("task_model"))
        update_rule = keras.saving.deserialize_keras_object(config.pop("update_rule"))
        options = InnerLoopOptions(**config.pop("options"))
        return cls(task_model, update_rule, options, **config)

    def get_compile_config(self):
        if self.optimizer is None:
            return None
        meta = self.meta_optimizer
        return {"optimizer": keras.saving.serialize_keras_object(self.optimizer),
                "meta_optimizer": None if meta is None else
                keras.saving.serialize_keras_object(meta),
                "jit_compile": bool(self.jit_compile)}

    def compile_from_config(self, config):
        self.compile(optimizer=keras.saving.deserialize_keras_object(config["optimizer"]),
                     meta_optimizer=(None if config["meta_optimizer"] is None else
                                     keras.saving.deserialize_keras_object(
                                         config["meta_optimizer"])),
                     jit_compile=config["jit_compile"])
