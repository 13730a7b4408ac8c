"""SavedModel export of a continual learner: its weights, rates or masks and its fast update.

Signatures (inputs as the stream gives them: La-MAML family float32 [n, 784] in [0, 1],
strokes on black, split Omniglot [n, 28, 28, 1], CIFAR-100 / TinyImageNet [n, 32, 32, 3] /
[n, 64, 64, 3] normalised with the stream's mean and std (wtl_tf.data.photo_augment);
Continual-MAML float32 [n, 28, 28, 1] in [0, 1]):

  adapt_and_predict  support_x, support_y int32 [n], query_x -> logits [m, classes],
                     predictions int32 [m]: the learner's own fast update on the support
                     batch (La-MAML: one look-ahead step per chunk with the learned rates or
                     a * H(m); Continual-MAML: its inner steps from the slow weights with
                     alpha (* H(m))), then the query's predictions.
  predict            x -> logits, predictions with the slow weights (no adaptation).
  masks              `factor.<path>` the per-weight multiplier of the fast step and
                     `sparsity.<path>` / `sparsity.overall` the fraction at exactly 0.
  config             `json`: the run configuration.
"""

import json

import tensorflow as tf

from wtl_tf.export import add_masks_and_config, mask_outputs, save_atomically
from wtl_tf.run_directory import check_export_dir


def build_module(learner, config):
    module = tf.Module()
    module.weights = [getattr(v, "value", v) if not isinstance(v, tf.Variable) else v
                      for v in learner.checkpoint_variables()]
    input_shape = [None, *learner.model.input_shape[1:]]
    spec_x = tf.TensorSpec(input_shape, tf.float32)

    def outputs(logits):
        return {"logits": tf.cast(logits, tf.float32),
                "predictions": tf.cast(tf.argmax(logits, -1), tf.int32)}

    @tf.function(input_signature=[spec_x, tf.TensorSpec([None], tf.int32), spec_x],
                 autograph=False)
    def adapt_and_predict(support_x, support_y, query_x):
        checks = [tf.debugging.assert_positive(tf.shape(support_y)[0], message="adapt_and_"
                                               "predict needs at least one support example"),
                  tf.debugging.assert_equal(tf.shape(support_x)[0], tf.shape(support_y)[0],
                                            message="support_y must hold one label per "
                                                    "support example")]
        with tf.control_dependencies(checks):
            fast = learner.fast_weights(support_x, tf.cast(support_y, tf.int64))
        return outputs(learner.forward_with(fast, query_x))

    @tf.function(input_signature=[spec_x], autograph=False)
    def predict(x):
        return outputs(learner.forward_with(learner.slow_weights(), x))

    module.adapt_and_predict, module.predict = adapt_and_predict, predict
    signatures = {"adapt_and_predict": adapt_and_predict, "predict": predict}
    config_json = json.dumps(config, default=str, indent=1)
    add_masks_and_config(module, signatures, lambda: mask_outputs(learner.mask_factors()),
                         config_json)
    return module, signatures, config_json


def export_continual(learner, export_dir, config):
    """Writes the SavedModel atomically (as the few-shot export); returns its path."""
    check_export_dir(export_dir)
    module, signatures, config_json = build_module(learner, config)
    return save_atomically(module, signatures, config_json, export_dir)
