"""SavedModel export, its standalone use, and the TensorBoard event files of a real run."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import background
from helpers import plugin_tags, read_events

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_BACKGROUND = {}


def start_in_background(omniglot_dir):
    """Starts the real run the tests below share (train.py: a short sparse-MAML run on
    Omniglot, exported) as soon as the tests are collected (tests/conftest.py), niced below
    the main process and above the flagfile workers: the suite goes on while it trains."""
    if _BACKGROUND:
        return
    out = pathlib.Path(tempfile.mkdtemp(prefix="wtl-omniglot-run-"))
    args = [sys.executable, os.path.join(ROOT, "train.py"), "--dataset=omniglot",
            f"--data_dir={omniglot_dir}", "--split=omniglot_small_alphabets",
            "--algorithm=sparse_maml", "--meta_batch_size=4", "--meta_iterations=20",
            "--eval_every=10", "--validation_tasks=8", "--test_tasks=20", "--inner_steps_eval=2",
            f"--output_dir={out / 'run'}", f"--export_dir={out / 'export'}"]
    _BACKGROUND["out"] = out
    _BACKGROUND["proc"] = background.popen(
        args, niceness=5, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def stop_background():
    background.kill([_BACKGROUND["proc"]] if _BACKGROUND else [], _BACKGROUND.get("out"))


@pytest.fixture(scope="module")
def omniglot_run(omniglot_dir):
    """That run's directory (`run/` and `export/`), once it has finished."""
    start_in_background(omniglot_dir)  # already started when the suite collected this module
    proc = _BACKGROUND["proc"]
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    return _BACKGROUND["out"]


def test_event_files_hold_sparsity_loss_accuracy_and_flags(omniglot_run):
    events = read_events(str(omniglot_run / "run" / "tensorboard"))
    assert [s for s, _ in events["train"]["epoch_loss"]] == [10, 20]
    assert all(0 <= v <= 1 for _, v in events["validation"]["epoch_accuracy"])
    assert "epoch_pre_accuracy" in events["validation"]
    meta = events["meta"]
    overall = [v for _, v in meta["sparsity/overall"]]
    assert len(overall) == 2 and all(0 < v < 1 for v in overall)
    assert {"sparsity/conv1", "sparsity/conv4", "sparsity/head"} <= set(meta)
    assert "adaptation/query_accuracy_after_step_02" in meta
    assert meta["kernel_masks/conv2"][0][1].shape == (2 + 1,)  # width, height, one PNG
    assert meta["factors/conv1/kernel"][0][1].shape == (30, 3)  # histogram buckets
    assert b"| algorithm | sparse_maml |" in meta["run/flags"][0][1].item()


def test_tensorboard_plugins_list_the_promised_tags(omniglot_run):
    """What `tensorboard --logdir` shows, read by TensorBoard's own event processing."""
    logs = str(omniglot_run / "run" / "tensorboard")
    assert {"epoch_loss", "epoch_accuracy"} <= plugin_tags(logs, "train", "scalars")
    assert {"epoch_accuracy", "epoch_pre_accuracy"} <= plugin_tags(logs, "validation",
                                                                    "scalars")
    assert {"sparsity/overall", "sparsity/conv1", "sparsity/head",
            "adaptation/query_accuracy_after_step_00"} <= plugin_tags(logs, "meta", "scalars")
    assert {"factors/conv1/kernel", "factors/head/kernel"} <= plugin_tags(logs, "meta",
                                                                          "histograms")
    assert {"kernel_masks/conv1", "kernel_masks/conv4"} <= plugin_tags(logs, "meta", "images")
    assert "run/flags" in plugin_tags(logs, "meta", "text")
    assert plugin_tags(logs, "meta", "hparams")  # the settings, in the HPARAMS tab


def _episode(omniglot_dir, seed=5):
    from wtl_tf.data.registry import task_distribution

    tasks = task_distribution("omniglot", ways=5, shots=1, queries=15, seed=seed,
                              data_dir=omniglot_dir, split="omniglot_small_alphabets")
    raw = next(iter(tasks.episodes("test", 1, raw=True)))
    normalized = next(iter(tasks.episodes("test", 1)))
    return {k: v[0].numpy() for k, v in raw.items()}, {k: v[0] for k, v in normalized.items()}


def test_export_loads_without_wtl_tf_and_matches_the_library(omniglot_run, omniglot_dir, tmp_path):
    from wtl_tf import experiment
    from wtl_tf.config import ExperimentConfig

    config = json.loads((omniglot_run / "run" / "config.json").read_text())
    config["output_dir"] = str(omniglot_run / "run")
    config["update_rules"] = tuple(config["update_rules"])
    from wtl_tf.data.registry import task_distribution

    resolved = ExperimentConfig(**config).resolved()
    tasks = task_distribution("omniglot", ways=5, shots=1, queries=15, seed=0,
                              data_dir=omniglot_dir, split="omniglot_small_alphabets")
    learner = experiment.build_learner(resolved, tasks)
    learner.load_weights(str(omniglot_run / "run" / "best.weights.h5"))
    raw, normalized = _episode(omniglot_dir)
    adaptation = learner.adapt(normalized["support_x"], normalized["support_y"],
                               steps=learner.inner_steps_eval, first_order=True,
                               task_seed=learner.episode_seed(normalized["support_x"]))
    library_logits = learner.predict_adapted(adaptation, normalized["query_x"]).numpy()

    np.savez(tmp_path / "episode.npz", **raw)
    script = textwrap.dedent(f"""
        import sys, numpy as np, tensorflow as tf
        e = np.load({str(tmp_path / 'episode.npz')!r})
        m = tf.saved_model.load({str(omniglot_run / 'export')!r})
        out = m.signatures["adapt_and_predict"](support_images=tf.constant(e["support_x"]),
            support_labels=tf.constant(e["support_y"]), query_images=tf.constant(e["query_x"]))
        more = m.adapt_and_predict(tf.constant(e["support_x"]), tf.constant(e["support_y"]),
            tf.constant(e["query_x"]), inner_steps=tf.constant(5))
        masks = m.signatures["masks"]()
        assert not any(name.startswith(("wtl_tf", "datasets")) for name in sys.modules)
        np.savez(sys.argv[1], logits=out["logits"].numpy(), predictions=out["predictions"].numpy(),
                 logits5=more["logits"].numpy(), overall=masks["sparsity.overall"].numpy())
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out.npz")],
                          capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(result["logits"], library_logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(result["predictions"], np.argmax(library_logits, axis=-1))
    assert result["logits5"].shape == (75, 5) and not np.allclose(result["logits5"],
                                                                 result["logits"])
    from wtl_tf.sparsity import sparsity_report
    assert result["overall"] == pytest.approx(sparsity_report(learner.update_rule)["overall"])


def test_signature_rejects_bad_inputs_with_clear_errors(omniglot_run, omniglot_dir):
    loaded = tf.saved_model.load(str(omniglot_run / "export"))
    raw, _ = _episode(omniglot_dir)
    predict = loaded.signatures["adapt_and_predict"]
    good = dict(support_images=tf.constant(raw["support_x"]),
                support_labels=tf.constant(raw["support_y"]),
                query_images=tf.constant(raw["query_x"]))
    assert predict(**good)["predictions"].shape == (75,)
    rgb = dict(good, query_images=tf.image.grayscale_to_rgb(tf.constant(raw["query_x"])))
    np.testing.assert_array_equal(predict(**rgb)["predictions"], predict(**good)["predictions"])
    big = dict(good, support_images=tf.image.resize(tf.constant(raw["support_x"]), [56, 56],
                                                     "nearest"))
    assert predict(**big)["logits"].shape == (75, 5)  # any H, W is resized inside
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"support_labels must be class "
                                                             r"indices in \[0, 5\)"):
        predict(**dict(good, support_labels=tf.constant([0, 1, 2, 3, 7], tf.int32)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one label per support image"):
        predict(**dict(good, support_labels=tf.constant([0, 1, 2], tf.int32)))
    layout = r"uint8 \[N, H, W, C\] with C = 1 \(grey\) or 3 \(RGB\)"
    with pytest.raises(tf.errors.InvalidArgumentError, match=layout):
        predict(**dict(good, query_images=tf.zeros([4, 28, 28, 2], tf.uint8)))
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError), match="C\\]|shape"):
        predict(**dict(good, support_images=tf.zeros([5, 28, 28], tf.uint8)))  # wrong rank
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError), match="int32"):
        predict(**dict(good, support_labels=tf.constant([0.0, 1, 2, 3, 4])))  # wrong dtype


def test_evaluate_module_prints_mean_and_ci(omniglot_run, omniglot_dir):
    proc = subprocess.run([sys.executable, "-m", "wtl_tf.cli.evaluate",
                           f"--saved_model={omniglot_run / 'export'}", f"--data_dir={omniglot_dir}",
                           "--episodes=30"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("accuracy over 30 test episodes:") and "± " in line


def test_evaluate_refuses_a_way_count_the_export_cannot_answer(omniglot_run, omniglot_dir):
    proc = subprocess.run([sys.executable, "-m", "wtl_tf.cli.evaluate",
                           f"--saved_model={omniglot_run / 'export'}", f"--data_dir={omniglot_dir}",
                           "--ways=10", "--episodes=2"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "wtl-evaluate: error: --ways=10 contradicts the export: its head answers 5 classes; "
        "drop --ways or export a 10-way run")
    assert "Traceback" not in proc.stderr


def test_half_written_export_never_replaces_a_good_one(omniglot_run, tmp_path, monkeypatch):

    from wtl_tf import export

    target = tmp_path / "model"
    shutil.copytree(omniglot_run / "export", target)
    before = (target / "saved_model.pb").read_bytes()

    def crash(*args, **kwargs):
        os.makedirs(args[1], exist_ok=True)
        (open(os.path.join(args[1], "saved_model.pb"), "wb")).write(b"half")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(export.tf.saved_model, "save", crash)
    from wtl_tf import MetaLearner, models, rules

    learner = MetaLearner(models.mlp(), rules.chain(rules.Scale(0.1)), loss="mse")
    with pytest.raises(OSError, match="simulated"):
        export.export_learner(learner, str(target))
    assert (target / "saved_model.pb").read_bytes() == before
    tf.saved_model.load(str(target))  # still a complete, loadable export


def test_loaded_model_explains_float_images_empty_queries_and_negative_steps(omniglot_run,
                                                                             omniglot_dir):
    loaded = tf.saved_model.load(str(omniglot_run / "export"))
    raw, _ = _episode(omniglot_dir)
    good = dict(support_images=tf.constant(raw["support_x"]),
                support_labels=tf.constant(raw["support_y"]),
                query_images=tf.constant(raw["query_x"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images must be uint8 .* got "
                                                             r"float32; convert first"):
        loaded.adapt_and_predict(**dict(good, support_images=tf.cast(good["support_images"],
                                                                     tf.float32) / 255.0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="needs at least one query row"):
        loaded.adapt_and_predict(**dict(good, query_images=tf.zeros([0, 28, 28, 1], tf.uint8)))
    for name in ("support_images", "query_images"):  # a grayscale array without its channel
        wanted = rf"{name} must be images \[N, H, W, C\] \(rank 4\), got rank 3"
        with pytest.raises(tf.errors.InvalidArgumentError, match=wanted):
            loaded.adapt_and_predict(**dict(good, **{name: good[name][..., 0]}))
    with pytest.raises(tf.errors.InvalidArgumentError, match="inner_steps must be >= 0"):
        loaded.adapt_and_predict(**good, inner_steps=tf.constant(-1))
    zero = loaded.adapt_and_predict(**good, inner_steps=tf.constant(0))
    assert zero["logits"].shape == (75, 5)
    for images in (raw["support_x"].astype(np.float64), raw["support_x"].astype(np.int64)):
        dtype = images.dtype.name  # NumPy's defaults: refused in one line, with the fix
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"images must be uint8 .* "
                                                                 rf"got {dtype}; convert first"):
            loaded.adapt_and_predict(**dict(good, support_images=images,
                                            query_images=raw["query_x"].astype(images.dtype)))


def test_loaded_model_accepts_numpy_default_labels_and_steps(omniglot_run, omniglot_dir):
    loaded = tf.saved_model.load(str(omniglot_run / "export"))
    raw, _ = _episode(omniglot_dir)
    images = dict(support_images=raw["support_x"], query_images=raw["query_x"])
    labels = np.asarray(raw["support_y"], np.int64)  # e.g. np.arange(5).repeat(...)
    expected = loaded.adapt_and_predict(support_labels=tf.constant(labels, tf.int32), **images)
    for steps in ({}, {"inner_steps": np.int64(2)}, {"inner_steps": 2}):
        out = loaded.adapt_and_predict(support_labels=labels, **images, **steps)
        np.testing.assert_array_equal(out["logits"], expected["logits"])


def test_a_regression_export_accepts_float64_inputs(tmp_path):
    from wtl_tf import MetaLearner, export, models, rules

    learner = MetaLearner(models.mlp(), rules.chain(rules.Scale(0.1)), loss="mse")
    learner.compile(optimizer="adam")
    loaded = tf.saved_model.load(export.export_learner(learner, str(tmp_path / "export")))
    x = np.linspace(-5, 5, 10)[:, None]  # float64, as NumPy makes them
    as32 = loaded.adapt_and_predict(tf.constant(x, tf.float32), tf.constant(np.sin(x),
                                    tf.float32), tf.constant(x, tf.float32))
    as64 = loaded.adapt_and_predict(x, np.sin(x), x, inner_steps=np.int64(1))
    np.testing.assert_array_equal(as64["predictions"], as32["predictions"])


def test_wtl_plot_on_a_finished_train_run(omniglot_run, tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the [plots] extra (matplotlib)")
    from wtl_tf import plots

    paths = plots.plot_runs([str(omniglot_run / "run")], str(tmp_path))
    assert {os.path.basename(p) for p in paths} == {
        "learning_curves.png", "learning_curves.svg", "sparsity.png", "sparsity.svg"}
