"""TensorBoard summaries for meta-training.

At every validation point (every `eval_every` meta-iterations) the callback writes the
epoch metrics to the runs train/ and validation/ (tags `epoch_<metric>`, as Keras' own
TensorBoard callback names them) and, into meta/:
- the run's flags (text, once);
- adaptation curves: query loss and accuracy after 0..K inner steps on fixed episodes (about
  20 evenly spaced steps when K is larger);
- mask sparsity, overall and per layer;
- histograms of the meta-parameters (raw m) and of the per-parameter factors H(m)/rates;
- every conv kernel's mask as an image (rows: input channel x kernel row, columns: output
  channel x kernel column).
- the run's settings through TensorBoard's hparams plugin (once), so that runs can be
  compared by their settings in TensorBoard's HPARAMS tab.
Nothing runs inside the meta-step, so logging costs nothing per step. The summaries are
written with `tf.summary` (the `tensorboard` package, a dependency); `tensorboard --logdir
RUN_DIR/tensorboard` shows them.
"""

import json

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams

from wtl_tf import runners
from wtl_tf.sparsity import layer_of, sparsity_report


def kernel_mask_image(mask):
    """[kh, kw, cin, cout] -> [1, cin*kh, cout*kw, 1] image of a conv-kernel mask."""
    kh, kw, cin, cout = mask.shape
    grid = np.transpose(np.asarray(mask, np.float32), (2, 0, 3, 1)).reshape(cin * kh, cout * kw)
    return grid[None, :, :, None]


def logged_steps(steps, most=20):
    """The inner steps whose adaptation curve is logged: all of up to `most`, else about
    `most` evenly spaced ones, always with 0 and the last."""
    if steps <= most:
        return list(range(steps + 1))
    return sorted(set(range(0, steps, -(-steps // most))) | {steps})


def hparams_values(config):
    """The run's settings as the hparams plugin accepts them (bool, int, float or str)."""
    return {name: value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
            for name, value in sorted(config.items())}


def write_settings(config, step=0):
    """The settings as a table (text) and as hparams, into the default writer."""
    tf.summary.text("run/flags", config_markdown(config), step)
    tf.summary.text("run/config_json", json.dumps(config, indent=1, default=str), step)
    hparams.hparams(hparams_values(config))


def config_markdown(config):
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(config.items()))
    return f"| flag | value |\n|---|---|\n{rows}"


class MetaSummaries(keras.callbacks.Callback):
    def __init__(self, log_dir, config=None, probe_episodes=None, probe_steps=None):
        super().__init__()
        self.writer = tf.summary.create_file_writer(f"{log_dir}/meta")
        self.train_writer = tf.summary.create_file_writer(f"{log_dir}/train")
        self.validation_writer = tf.summary.create_file_writer(f"{log_dir}/validation")
        self.config = config or {}
        self.probe_episodes, self.probe_steps = probe_episodes, probe_steps
        self._curve = None

    def on_train_begin(self, logs=None):
        with self.writer.as_default():
            write_settings(self.config, int(self.model.optimizer.iterations.numpy()))
        self.writer.flush()

    def _adaptation_curves(self):
        if self._curve is None:
            learner, steps = self.model, self.probe_steps or self.model.inner_steps_eval

            def curves(batch):
                params = learner.read_params()

                def curve(i):
                    episode = runners.episode(batch, i)
                    return learner.adaptation_curve(
                        episode, steps, learner.episode_seed(episode["support_x"]), params)

                return tf.map_fn(curve, tf.range(batch["support_x"].shape[0]),
                                 fn_output_signature=tf.float32)

            self._curve = tf.function(curves, autograph=False)
        return np.mean(self._curve(self.probe_episodes).numpy(), axis=0)  # [2, K + 1]

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        rule = self.model.update_rule
        for name, value in (logs or {}).items():
            validation = name.startswith("val_")
            with (self.validation_writer if validation else self.train_writer).as_default():
                tf.summary.scalar(f"epoch_{name[4:] if validation else name}", value, step)
        with self.writer.as_default():
            if self.probe_episodes is not None:
                curve = self._adaptation_curves()
                for k in logged_steps(curve.shape[1] - 1):
                    tf.summary.scalar(f"adaptation/query_loss_after_step_{k:02d}", curve[0, k],
                                     step)
                    if self.model.is_classifier:
                        tf.summary.scalar(f"adaptation/query_accuracy_after_step_{k:02d}",
                                          curve[1, k], step)
            report = sparsity_report(rule)
            if report is not None:
                tf.summary.scalar("sparsity/overall", report["overall"], step)
                for layer, value in report["per_layer"].items():
                    tf.summary.scalar(f"sparsity/{layer}", value, step)
            for variable in rule.trainable_variables:
                tf.summary.histogram(f"meta_parameters/{variable.path}", variable, step,
                                     buckets=30)
            for path, factor in rule.factors().items():
                tf.summary.histogram(f"factors/{path}", factor, step, buckets=30)
                if len(factor.shape) == 4:
                    tf.summary.image(f"kernel_masks/{layer_of(path)}",
                                    kernel_mask_image(factor), step)
        for writer in (self.writer, self.train_writer, self.validation_writer):
            writer.flush()
