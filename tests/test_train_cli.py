"""train.py end to end: a short successful run and one-line errors on bad input."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_train(*args, timeout=240):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def error_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith("train.py: error:")]


def test_short_run_writes_config_flags_curve_and_results(tmp_path):
    out = tmp_path / "run"
    proc = run_train("--meta_iterations=300", "--eval_every=150", "--test_tasks=50",
                     "--validation_tasks=25", f"--output_dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("config.json", "flags.txt", "learning_curve.csv", "results.json"):
        assert (out / name).exists(), name
    results = json.loads((out / "results.json").read_text())
    assert results["meta_iterations"] == 300 and results["config"]["algorithm"] == "sparse_maml"
    assert results["config"]["order"] == "second"  # sinusoid's default (Finn et al.)
    assert "--meta_iterations=300" in (out / "flags.txt").read_text()
    assert "before adaptation" in proc.stdout and "after" in proc.stdout
    assert len((out / "learning_curve.csv").read_text().strip().splitlines()) == 3


# The process itself: exit status, one line on stderr, no traceback. One error found while
# resolving the flags and one found while training; the other bad inputs run in-process with
# the same line checked (tests/test_bad_input.py), since a process costs ~4 s of imports.
@pytest.mark.parametrize("args,message", [
    (["--algorithm=reptile"], "flag --algorithm=reptile: value should be one of <"),
    (["--inner_lr=1e30", "--meta_iterations=200", "--eval_every=100"], "meta-loss became nan"),
])
def test_bad_input_gives_one_line_error_and_no_results(tmp_path, args, message):
    out = tmp_path / "run"
    proc = run_train(*args, f"--output_dir={out}")
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (out / "results.json").exists()


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    proc = run_train(f"--output_dir={blocker}/run")
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert len(lines) == 1 and "is not writable" in lines[0] and "--output_dir" in lines[0]


def test_order_resolution_dataset_default_and_definitions():
    from wtl_tf.config import ExperimentConfig

    assert ExperimentConfig(algorithm="sparse_maml").resolved().order == "second"  # sinusoid
    assert ExperimentConfig(algorithm="fomaml").resolved().order == "first"  # by definition
    assert ExperimentConfig(algorithm="sparse_maml", order="first").resolved().order == "first"


@pytest.mark.parametrize("cfg", sorted(f for f in os.listdir(os.path.join(ROOT, "configs"))
                                       if f.endswith(".cfg") and ".base." not in f))
def test_shipped_flagfiles_resolve_to_valid_configurations(cfg, monkeypatch):
    import train

    from wtl_tf.cli.flagfiles import expand

    monkeypatch.chdir("/")  # from any directory: nested flagfiles are relative to their file
    try:
        train.FLAGS(expand(["train.py", f"--flagfile={os.path.join(ROOT, 'configs', cfg)}"]))
        config = train.config_from_flags().resolved()
    finally:
        train.FLAGS.unparse_flags()
    assert config.output_dir.startswith("runs/")
    if cfg.startswith("continual"):  # streams at their reference length
        assert config.stream_steps == 10_000 or config.stream != "osaka_omniglot"
        assert config.meta_iterations == 200 or config.stream != "sequential_sine"
        # A continual flagfile spells out its learner's reference row, which the code holds
        # (wtl_tf.algorithms, wtl_tf.continual.protocol): the two never drift apart.
        from wtl_tf.config import ExperimentConfig

        given = dict(algorithm=config.algorithm, stream=config.stream)
        if config.stream.startswith("osaka"):
            given["stationarity"] = config.stationarity
        defaults = ExperimentConfig(**given).resolved().to_dict()
        differ = {k: (v, defaults[k]) for k, v in config.to_dict().items()
                  if k not in ("output_dir", "export_dir") and v != defaults[k]}
        assert not differ, f"{cfg} departs from its reference row (flagfile, code): {differ}"
        return
    assert config.test_tasks >= 600 or cfg.endswith("_cpu.cfg")  # CPU-scaled by name
    if "mini_imagenet" in cfg:
        assert config.inner_steps == config.inner_steps_eval == 35


def test_documented_settings_tables_are_the_ones_the_code_generates():
    from wtl_tf.algorithms import CONTINUAL_ALGORITHMS
    from wtl_tf.config import settings_table

    with open(os.path.join(ROOT, "docs", "reliability.md")) as f:
        assert settings_table() in f.read()
    with open(os.path.join(ROOT, "docs", "continual.md")) as f:
        assert settings_table(CONTINUAL_ALGORITHMS) in f.read()


@pytest.mark.parametrize("args,message", [
    (dict(algorithm="maml", mask_init="kaiming"), "--mask_init=kaiming is not read"),
    (dict(algorithm="meta_exp", init_shift=0.5), "--init_shift=0.5 is not read"),
    (dict(algorithm="sparse_maml", share_decay=0.5), "--share_decay=0.5 is not read"),
    (dict(algorithm="warp_leap", dataset="omniglot_alphabets", meta_clip=1.0),
     "--meta_clip=1.0 is not read"),
    (dict(algorithm="leap", dataset="omniglot_alphabets", outer_reduction="mean"),
     "--outer_reduction=mean is not read"),
    (dict(algorithm="warp_leap", dataset="omniglot_alphabets", recompute_inner_steps=True),
     "--recompute_inner_steps=True is not read"),
    (dict(algorithm="warp_leap", dataset="omniglot_alphabets", warp_batchnorm=True),
     "--warp_batchnorm=True is not read"),
    (dict(algorithm="maml", meta_lr=0.1), "--meta_lr=0.1 is not read"),
    (dict(algorithm="sparse_maml", replay="approximate"), "--replay=approximate is not read"),
    (dict(algorithm="grad_sharing", distribution="multi_worker"), "does not support"),
])
def test_settings_the_run_would_not_read_are_refused(args, message):
    from wtl_tf.config import ExperimentConfig
    from wtl_tf.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        ExperimentConfig(**args).resolved()


def test_settings_are_accepted_where_they_are_read():
    from wtl_tf.config import ExperimentConfig

    ExperimentConfig(algorithm="warp_leap", dataset="omniglot_alphabets", warp_depth=2,
                     warp_activation="relu", warp_batchnorm=True).resolved()
    ExperimentConfig(algorithm="meta_exp", inner_lr=0.1).resolved()  # m starts at log(alpha)
    ExperimentConfig(algorithm="sparse_maml_meta_sgd", mask_init="constant",
                     inner_lr=0.1).resolved()
    ExperimentConfig(algorithm="maml", learn_inner_lr=True, meta_lr=0.1).resolved()
    ExperimentConfig(algorithm="grad_sharing", share_decay=0.5).resolved()
