"""SavedModel export of a meta-learned initialisation, its masks/rates and its inner loop.

The SavedModel needs only TensorFlow to load (`tf.saved_model.load`): the inner loop, the
update rule and the preprocessing are traced into it. Signatures:

  adapt_and_predict        support_images uint8 [N, H, W, C], support_labels int32 [N],
                           query_images uint8 [M, H, W, C]  ->  logits float32 [M, ways],
                           predictions int32 [M]. Any H, W; C in {1, 3}; images are
                           converted, resized and normalised inside exactly as in training,
                           and adapted with the evaluation number of inner steps.
  adapt_and_predict_steps  the same plus inner_steps int32 [] (the optional override; on
                           the loaded object, `adapt_and_predict(..., inner_steps=k)` works).
On the loaded object (`tf.saved_model.load`), NumPy's defaults work too: int64 labels and
steps, float64 regression inputs (cast at the boundary); images of any other dtype than
uint8 (float, int64) are refused in one line that says how to convert them.
  masks                    per adapted tensor its update factor (binary mask or rate) as
                           `factor.<path>`, its sparsity as `sparsity.<path>`, and
                           `sparsity.overall` (or `inner_lr` for a plain scalar rule).
  config                   `json`: the run configuration and the inner-loop settings.
Stochastic update rules (sparse-MAML+'s mask hypernetwork) draw their noise eps once per
call, keyed by a fingerprint of the support set (MetaLearner.episode_seed): the same support
set always gets the same masks, different support sets independent draws, as at meta-test.
For regression (sinusoid) the inputs are float32 support_x [N, d], support_y [N, o],
query_x [M, d] and the output is predictions [M, o].

Export is atomic: the SavedModel is written to a sibling directory and renamed into place,
so a half-written export never replaces a good one.
"""

import json
import os
import shutil

import tensorflow as tf

from wtl_tf import signal_watch
from wtl_tf.errors import ConfigError
from wtl_tf.run_directory import check_export_dir, is_export


NORMALIZATIONS = {
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def _preprocess(images, image_size, channels, normalization):
    """uint8 [n, h, w, c] -> float32 [n, size, size, channels], as the training pipeline."""
    x = tf.cast(images, tf.float32)
    c = tf.shape(x)[-1]
    if channels == 1:
        x = tf.cond(tf.equal(c, 3), lambda: tf.image.rgb_to_grayscale(x), lambda: x[..., :1])
    else:
        x = tf.cond(tf.equal(c, 1), lambda: tf.image.grayscale_to_rgb(x), lambda: x[..., :3])
    x = tf.ensure_shape(x, [None, None, None, channels])
    x = tf.image.resize(x, [image_size, image_size], method="area", antialias=True)
    x = tf.round(tf.clip_by_value(x, 0.0, 255.0)) / 255.0  # the uint8 the dataset stores
    mean, std = NORMALIZATIONS[normalization]
    return (x - tf.constant(mean[:channels])) / tf.constant(std[:channels])


def _image_checks(support_images, support_labels, query_images, ways):
    n = tf.shape(support_images)[0]
    support_labels = tf.cast(support_labels, tf.int64)  # int32 or int64, compared before a cast
    limit = tf.constant(ways, tf.int64)
    channels_ok = lambda images: tf.reduce_any(  # noqa: E731
        tf.equal(tf.shape(images)[-1], tf.constant([1, 3])))
    return [
        tf.debugging.assert_positive(n, message="adapt_and_predict needs at least one support "
                                     "image"),
        tf.debugging.assert_equal(tf.shape(support_labels)[0], n, message="support_labels "
                                  "must hold one label per support image"),
        tf.debugging.assert_non_negative(support_labels, message=f"support_labels must be "
                                         f"class indices in [0, {ways})"),
        tf.debugging.assert_less(support_labels, limit, message=f"support_labels must be class "
                                 f"indices in [0, {ways}): this model was meta-trained "
                                 f"{ways}-way"),
        tf.debugging.Assert(tf.logical_and(channels_ok(support_images), channels_ok(query_images)),
                            ["images must be uint8 [N, H, W, C] with C = 1 (grey) or 3 (RGB)"]),
    ]


def _query_and_steps_checks(query, inner_steps, name):
    checks = [tf.debugging.assert_positive(tf.shape(query)[0], message=f"adapt_and_predict "
                                           f"needs at least one query row ({name} is empty)")]
    if inner_steps is not None:
        checks.append(tf.debugging.assert_non_negative(
            inner_steps, message="inner_steps must be >= 0 (0: predict with the meta-learned "
                                 "initialisation)"))
    return checks


def _refuse_non_uint8(images, ways, query_images):
    """The body traced for float or wide-integer images: a clear error instead of a
    signature mismatch (which range they hold, 0..1 or 0..255, is the caller's to say)."""
    return _refuse(f"images must be uint8 [N, H, W, C] pixel values 0..255, got "
                   f"{images.dtype.name}; convert first: np.asarray(images, np.uint8) for "
                   "pixel values, tf.cast(tf.round(images * 255), tf.uint8) for images in "
                   "[0, 1]", ways, query_images)


# Traces a loaded model answers beyond its signatures: NumPy's default dtypes (float64,
# int64) and float images, accepted (labels, steps, regression inputs: cast at the
# boundary) or refused in one line (images, whose range only the caller knows).
REFUSED_IMAGE_DTYPES = (tf.float32, tf.float64, tf.int32, tf.int64)
LABEL_DTYPES = (tf.int32, tf.int64)


def _refuse_rank(images, name, ways, query_images):
    """The body traced for images without a channel axis (or with extra axes)."""
    return _refuse(f"{name} must be images [N, H, W, C] (rank 4), got rank "
                   f"{images.shape.rank}; grayscale images need their channel axis, e.g. "
                   "images[..., None]", ways, query_images)


def _refuse(message, ways, query_images):
    failed = tf.debugging.Assert(tf.constant(False), [message])
    with tf.control_dependencies([failed]):
        n = tf.shape(query_images)[0]
        return {"logits": tf.zeros([n, ways]), "predictions": tf.zeros([n], tf.int32)}


def mask_outputs(factors):
    """The `masks` signature's outputs for a {path: factor} tree: `factor.<path>`,
    `sparsity.<path>` (the fraction at exactly 0) and `sparsity.overall`."""
    out, zeros, total = {}, tf.constant(0.0), 0
    for path, factor in factors.items():
        name = path.replace("/", ".")
        factor = tf.cast(factor, tf.float32)
        closed = tf.reduce_sum(tf.cast(tf.equal(factor, 0), tf.float32))
        out[f"factor.{name}"] = factor
        out[f"sparsity.{name}"] = closed / max(1, factor.shape.num_elements())
        zeros, total = zeros + closed, total + factor.shape.num_elements()
    out["sparsity.overall"] = zeros / max(1, total)
    return out


def _few_shot_mask_outputs(learner):
    factors = learner.update_rule.factors()
    if not factors:
        alphas = [w for w in learner.update_rule.weights if w.path.endswith("alpha")]
        return {"inner_lr": tf.convert_to_tensor(alphas[0]) if alphas else tf.constant(0.0)}
    return mask_outputs(factors)


def add_masks_and_config(module, signatures, masks, config_json):
    """The signatures every export has: `masks` (the traced `masks()`, read from the saved
    variables when called) and `config` (`json`)."""
    module.masks = tf.function(masks, input_signature=[], autograph=False)
    module.config = tf.function(lambda: {"json": tf.constant(config_json)}, input_signature=[],
                                autograph=False)
    signatures.update(masks=module.masks.get_concrete_function(),
                      config=module.config.get_concrete_function())


def build_module(learner, preprocessing=None, config=None):
    """A tf.Module with the signatures above (preprocessing=None: float regression inputs)."""
    module = tf.Module()
    module.tracked_variables = [v.value for v in learner.task_model.weights
                                + learner.update_rule.weights]
    default_steps = learner.inner_steps_eval
    config_json = json.dumps({**(config or {}), "inner_steps_eval": default_steps,
                              "preprocessing": preprocessing}, sort_keys=True, default=str)

    def run(support_x, support_y, query_x, inner_steps):
        # A tensor: the steps run in a tf.while_loop, so exporting a 35- or 100-step inner
        # loop traces one step, not all of them (same results).
        steps = tf.constant(default_steps) if inner_steps is None else inner_steps
        adaptation = learner.adapt(support_x, support_y, steps=steps, first_order=True,
                                   task_seed=learner.episode_seed(support_x), evaluation=True)
        return learner.predict_adapted(adaptation, query_x)

    if preprocessing:
        ways = int(learner.task_model.output_shape[-1])
        size, channels = int(preprocessing["image_size"]), int(preprocessing["channels"])
        normalization = preprocessing["normalization"]
        if normalization not in NORMALIZATIONS:
            raise ConfigError(f"unknown normalisation {normalization!r}")

        @tf.function(autograph=False)
        def adapt_and_predict(support_images, support_labels, query_images, inner_steps=None):
            for images, name in ((support_images, "support_images"),
                                 (query_images, "query_images")):
                if images.shape.rank != 4:
                    return _refuse_rank(images, name, ways, query_images)
            if support_images.dtype != tf.uint8:
                return _refuse_non_uint8(support_images, ways, query_images)
            if query_images.dtype != tf.uint8:
                return _refuse_non_uint8(query_images, ways, query_images)
            with tf.control_dependencies(_image_checks(support_images, support_labels,
                                                       query_images, ways)
                                         + _query_and_steps_checks(query_images, inner_steps,
                                                                   "query_images")):
                xs = _preprocess(support_images, size, channels, normalization)
                xq = _preprocess(query_images, size, channels, normalization)
            logits = tf.cast(run(xs, tf.cast(support_labels, tf.int32), xq,
                                 None if inner_steps is None else tf.cast(inner_steps, tf.int32)),
                             tf.float32)
            return {"logits": logits,
                    "predictions": tf.argmax(logits, axis=-1, output_type=tf.int32)}

        specs = [tf.TensorSpec([None, None, None, None], tf.uint8, name="support_images"),
                 tf.TensorSpec([None], tf.int32, name="support_labels"),
                 tf.TensorSpec([None, None, None, None], tf.uint8, name="query_images")]
    else:
        in_dim = int(learner.task_model.input_shape[-1])
        out_dim = int(learner.task_model.output_shape[-1])

        @tf.function(autograph=False)
        def adapt_and_predict(support_x, support_y, query_x, inner_steps=None):
            support_x, support_y, query_x = (tf.cast(t, tf.float32)
                                             for t in (support_x, support_y, query_x))
            if inner_steps is not None:
                inner_steps = tf.cast(inner_steps, tf.int32)
            with tf.control_dependencies([tf.debugging.assert_equal(
                    tf.shape(support_x)[0], tf.shape(support_y)[0],
                    message="support_x and support_y need the same number of rows")]
                    + _query_and_steps_checks(query_x, inner_steps, "query_x")):
                predictions = run(support_x, support_y, query_x, inner_steps)
            return {"predictions": tf.cast(predictions, tf.float32)}

        specs = [tf.TensorSpec([None, in_dim], tf.float32, name="support_x"),
                 tf.TensorSpec([None, out_dim], tf.float32, name="support_y"),
                 tf.TensorSpec([None, in_dim], tf.float32, name="query_x")]

    module.adapt_and_predict = adapt_and_predict

    def trace(*inputs):  # with and without the inner_steps override, int32 or int64
        adapt_and_predict.get_concrete_function(*inputs)
        for steps in LABEL_DTYPES:
            adapt_and_predict.get_concrete_function(*inputs, tf.TensorSpec([], steps))

    if preprocessing:
        image = lambda dtype, name, rank=4: tf.TensorSpec(  # noqa: E731
            [None] * rank, dtype, name=name)
        refused = [(d, d) for d in REFUSED_IMAGE_DTYPES] + [(tf.float32, tf.uint8),
                                                           (tf.uint8, tf.float32)]
        for labels in LABEL_DTYPES:
            label_spec = tf.TensorSpec([None], labels, name="support_labels")
            trace(specs[0], label_spec, specs[2])
            for support_dtype, query_dtype in refused:  # traces that say to convert them
                trace(image(support_dtype, "support_images"), label_spec,
                      image(query_dtype, "query_images"))
            # Images without their channel axis (a grayscale array): traces that say so.
            for support_rank, query_rank in ((3, 4), (4, 3), (3, 3)):
                trace(image(tf.uint8, "support_images", support_rank), label_spec,
                      image(tf.uint8, "query_images", query_rank))
    else:
        trace(*[tf.TensorSpec(spec.shape, tf.float64, name=spec.name) for spec in specs])
        trace(*specs)
    signatures = {
        "adapt_and_predict": adapt_and_predict.get_concrete_function(*specs),
        "adapt_and_predict_steps": adapt_and_predict.get_concrete_function(
            *specs, tf.TensorSpec([], tf.int32, name="inner_steps")),
    }
    add_masks_and_config(module, signatures, lambda: _few_shot_mask_outputs(learner),
                         config_json)
    return module, signatures, config_json


def export_learner(learner, export_dir, preprocessing=None, config=None):
    """Writes the SavedModel to `export_dir` atomically; returns `export_dir`.

    `export_dir` must be new, empty or an earlier wtl_tf export (which is replaced): files
    this function did not write are never deleted."""
    check_export_dir(export_dir)
    module, signatures, config_json = build_module(learner, preprocessing, config)
    return save_atomically(module, signatures, config_json, export_dir)


def save_atomically(module, signatures, config_json, export_dir):
    """tf.saved_model.save into a sibling directory, then renamed over `export_dir` (an
    earlier export there is replaced only once the new one is complete)."""
    with signal_watch.writing():
        return _save_atomically(module, signatures, config_json, os.path.abspath(export_dir))


def _save_atomically(module, signatures, config_json, export_dir):
    partial = f"{export_dir}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    tf.saved_model.save(module, partial, signatures=signatures)
    with open(os.path.join(partial, "wtl_config.json"), "w") as f:
        f.write(config_json)
    if os.path.exists(export_dir):
        previous = f"{export_dir}.previous-{os.getpid()}"
        os.rename(export_dir, previous)
        os.rename(partial, export_dir)
        if is_export(previous) or not os.listdir(previous):
            shutil.rmtree(previous)
    else:
        os.rename(partial, export_dir)
    return export_dir
