"""Every flagfile in configs/ runs end to end: meta-training, validation, meta-test, export.

Each runs at its real algorithm, order, meta-batch size, ways, shots and inner steps (train
and evaluation), and exports a SavedModel when it sets --export_dir or is the first config of its
algorithm or (sparse-MAML) of its model (exporting_configs). To keep the suite within its
time budget only data are shrunk, as the design allows: one meta-iteration, one validation
task and one test task, 16 examples per inner step where a config draws task batches
(Warp-Leap: 128 in the reference), 1 query per class where the config's episodes allow
(omniglot_alphabets keeps its fixed 15/5 split), 8 filters per conv layer (ResNet-12:
8-16-32-64), 16x16 images (Omniglot from the real archives; miniImageNet from small files
in the published pickle format, 5 classes per split, 6 images each). Inner loops of the
MAML family run as tf.while_loops instead of being unrolled (--unroll_inner_steps=0: the
same computation, traced in a fraction of the time). A config that differs from another
only in sizes and rates (TWIN_FIELDS: shots, inner steps, meta-batch size, stationarity, ...)
runs the same code with other numbers: it is parsed, resolved and checked for memory as
train.py does, and its twin runs end to end (`twins`). The configs run in two worker
processes (python tests/test_flagfiles.py WORK OMNIGLOT_DIR MINI_DIR CONFIG...), started
right after collection at low priority so that they overlap with the rest of the suite
(tests/conftest.py); their records are checked at the end.
"""

import functools
import gc
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

import background  # noqa: E402
import train  # noqa: E402
from benchmarks.first_trace import write_mini_imagenet  # noqa: E402
from wtl_tf import experiment, preflight  # noqa: E402
from wtl_tf.cli.flagfiles import expand  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(f for f in os.listdir(os.path.join(ROOT, "configs"))
                 if f.endswith(".cfg") and ".base." not in f)


def _continual_shrink(real):
    """Continual flagfiles: a shorter stream (1 task; OSAKA: 8 steps after 1
    pretraining iteration; sine: 1 meta-iteration over 2 intervals, 2 test tasks) and 8
    filters; glances, inner steps, rates and buffers stay as configured."""
    if real.stream == "osaka_omniglot":
        return ["--stream_steps=8", "--pretrain_iterations=1", "--conv_channels=8"]
    if real.stream == "sequential_sine":
        return ["--meta_iterations=1", "--test_tasks=2", "--sine_subtasks=2"]
    if real.stream.startswith("split"):
        return ["--stream_tasks=1", "--pc_cnn_channels=8"]
    return ["--stream_tasks=1"]


@functools.lru_cache(maxsize=None)  # read by exporting_configs, twins and every run
def _real_config(cfg):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(expand(["train.py", f"--config={cfg}"]))
    return train.config_from_flags().resolved()


def exporting_configs(names=tuple(CONFIGS)):
    """The configs whose shrunk run also exports a SavedModel: those that set --export_dir
    themselves; the first (by name) of every algorithm with or without warp layers, what the
    exported adaptation depends on; and for every network (the model, or a continual run's
    stream) its first sparse-MAML config, else its first. An export is about a third of a
    shrunk run's time; these still export every algorithm and every network at least once."""
    reals = {cfg: _real_config(cfg) for cfg in sorted(names)}
    reals = {cfg: real for cfg, real in reals.items()
             if real.stream != "sequential_sine"}  # (the sine comparison writes no SavedModel)
    chosen, adaptations, networks = set(), set(), {}
    for cfg, real in reals.items():
        key = (real.algorithm, real.warp_layers)
        if real.export_dir or key not in adaptations:
            chosen.add(cfg)
        adaptations.add(key)
        network = real.model or real.stream
        current = networks.get(network)
        if current is None or (real.algorithm == "sparse_maml"
                               and reals[current].algorithm != "sparse_maml"):
            networks[network] = cfg
    return chosen | set(networks.values())


# What a config may change and still be its twin's run with other numbers.
TWIN_FIELDS = ("shots", "inner_steps", "inner_steps_eval", "meta_batch_size", "eval_batch_size",
               "stationarity", "shift_threshold", "inner_lr", "meta_lr", "output_dir")


def twins(names=tuple(CONFIGS)):
    """{config: the config run in its place}: the first config (by name) of every group whose
    resolved settings agree outside TWIN_FIELDS; configs without a twin are absent."""
    groups, chosen = {}, {}
    for cfg in sorted(names):
        settings = _real_config(cfg).to_dict()
        key = json.dumps({k: v for k, v in settings.items() if k not in TWIN_FIELDS},
                         sort_keys=True, default=str)
        if key in groups:
            chosen[cfg] = groups[key]
        else:
            groups[key] = cfg
    return chosen


def _config(cfg, tmp_path, data_dir, export=True):
    real = _real_config(cfg)
    if real.stream is not None:
        shrink = [f"--output_dir={tmp_path / 'run'}", f"--data_dir={data_dir}",
                  "--notensorboard", *_continual_shrink(real)]
        if export:
            shrink.append(f"--export_dir={tmp_path / 'export'}")
        flags.FLAGS.unparse_flags()
        flags.FLAGS(expand(["train.py", f"--config={cfg}", *shrink]))
        return real, train.config_from_flags().resolved()
    shrink = [f"--output_dir={tmp_path / 'run'}", f"--data_dir={data_dir}",
              "--meta_iterations=1", "--eval_every=1",
              "--conv_channels=8", "--notensorboard", "--verbose=0", "--image_size=16",
              "--eval_batch_size=1", "--validation_tasks=1", "--test_tasks=1"]
    if export:  # (a config that exports itself is always exported; see exporting_configs)
        shrink.append(f"--export_dir={tmp_path / 'export'}")
    if real.task_batch:
        shrink.append("--task_batch=16")
    if real.unroll_inner_steps is not None:  # MAML family: loops, not unrolled (same results)
        shrink.append("--unroll_inner_steps=0")
    if real.dataset != "omniglot_alphabets":
        shrink.append("--queries=1")
    if real.dataset == "mini_imagenet":
        shrink.append("--data_source=pickle")
    if real.max_train_minutes:
        shrink.append("--max_train_minutes=30")
    flags.FLAGS.unparse_flags()
    flags.FLAGS(expand(["train.py", f"--config={cfg}", *shrink]))
    return real, train.config_from_flags().resolved()


STRUCTURE = ("algorithm", "order", "meta_batch_size", "ways", "shots", "inner_steps",
             "inner_steps_eval", "update_rules", "model", "adapt", "adapt_batchnorm", "inner_lr",
             "outer_optimizer", "meta_optimizer", "replay", "replay_batch", "stream", "glances",
             "memories", "replay_samples", "chunk_size", "passes", "stationarity", "meta_lr",
             "outer_lr", "mask_init", "learn_inner_lr")


def run_configs(names, work, omniglot_dir, mini_imagenet_dir):
    """Runs each flagfile (shrunk) and writes <work>/<name>.json: what the test checks."""
    exporters, twin_of = exporting_configs(), twins()
    for cfg in names:
        if not _claim(work, cfg):
            continue  # the other worker runs it
        out = pathlib.Path(work) / cfg
        data_dir = mini_imagenet_dir if "mini_imagenet" in cfg else omniglot_dir
        record = {"exported": cfg in exporters, "twin_of": twin_of.get(cfg)}
        try:
            real, config = _config(cfg, out, data_dir, export=cfg in exporters)
            if cfg in twin_of:
                preflight.check(real)  # what train.py checks before anything is written
                record["twin_settings"] = sorted(
                    k for k, v in real.to_dict().items()
                    if v != _real_config(twin_of[cfg]).to_dict()[k])
                (pathlib.Path(work) / f"{cfg}.json").write_text(json.dumps(record, default=str))
                continue
            record["changed_structure"] = [n for n in STRUCTURE
                                           if getattr(config, n) != getattr(real, n)]
            start = time.perf_counter()
            results, _ = experiment.run(config)
            exported = out / "export" / "wtl_config.json"
            record.update(seconds=round(time.perf_counter() - start, 1), results=results,
                          export=json.loads(exported.read_text()) if exported.exists() else None,
                          saved_model=(out / "export" / "saved_model.pb").exists(),
                          real_algorithm=real.algorithm)
        except Exception as e:  # noqa: BLE001 - reported by the test of this config
            record["error"] = f"{type(e).__name__}: {e}"
        (pathlib.Path(work) / f"{cfg}.json").write_text(json.dumps(record, default=str))


# Two worker processes keep both cores of a 2-core CI machine busy (much of the work is
# single-threaded tracing). Each goes through every config, longest first, and runs those it
# claims first (an exclusively created <work>/<name>.claim), so the two end within about one
# run of each other. Relative costs (roughly seconds on a 2-core CPU; only the order matters):
def _cost(name):
    if name.startswith("warpgrad"):
        return 118 if "reference" in name else 90
    if "resnet12" in name:
        return 40 if "5shot" in name or "sparse" in name else 20
    if name.startswith("continual"):
        return 38 if "sine" in name else 25 if "osaka" in name else 12
    return 30 if "20way_sparse" in name else 17


def _claim(work, name):
    try:
        os.close(os.open(os.path.join(work, f"{name}.claim"), os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False


_BACKGROUND = {}


def start_in_background(omniglot_dir):
    """Starts the worker processes (niced: the other tests come first) writing into a fresh
    work directory; `flagfile_runs` waits for them. Called by conftest after collection."""
    if _BACKGROUND:
        return
    work = pathlib.Path(tempfile.mkdtemp(prefix="wtl-flagfiles-"))
    mini = work / "mini_imagenet"
    mini.mkdir()
    write_mini_imagenet(mini, images_per_class=6)  # exactly 5-way 5-shot with 1 query
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    _BACKGROUND["work"] = work
    longest_first = sorted(CONFIGS, key=_cost, reverse=True)
    _BACKGROUND["procs"] = [
        background.popen([sys.executable, os.path.abspath(__file__), str(work), omniglot_dir,
                          str(mini), *longest_first], niceness=10, cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)]


def stop_background():
    background.kill(_BACKGROUND.get("procs", []), _BACKGROUND.get("work"))


@pytest.fixture(scope="module")
def flagfile_runs(omniglot_dir):
    start_in_background(omniglot_dir)  # already started when the whole suite runs
    procs = _BACKGROUND["procs"]
    errors = [p.communicate(timeout=1500)[1] for p in procs]
    for proc, error in zip(procs, errors):
        assert proc.returncode == 0, error[-3000:]
    return _BACKGROUND["work"]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_flagfile_runs_end_to_end(cfg, flagfile_runs):
    record = json.loads((flagfile_runs / f"{cfg}.json").read_text())
    assert "error" not in record, record.get("error")
    if record["twin_of"]:  # resolved and checked; its twin's run is checked by its own test
        assert set(record["twin_settings"]) <= set(TWIN_FIELDS)
        assert "output_dir" in record["twin_settings"] and len(record["twin_settings"]) > 1
        assert "error" not in json.loads((flagfile_runs / f"{record['twin_of']}.json")
                                         .read_text())
        return
    assert record["changed_structure"] == []  # only data were shrunk
    results = record["results"]
    if results.get("stream") == "sequential_sine":
        mse = results["continual"]["interval_mse"]
        assert len(mse["warpgrad"]) == len(mse["sgd"]) == 2 and np.all(np.isfinite(mse["sgd"]))
        return
    if record["exported"]:
        assert record["saved_model"] and record["export"]["algorithm"] == record["real_algorithm"]
    else:
        assert not record["saved_model"]
    if "continual" in results:
        stream = results["continual"]
        if "R" in stream:  # La-MAML family: the accuracy matrix of the one task
            assert np.asarray(stream["R"]).shape == (1, 1)
            assert 0.0 <= stream["retained_accuracy"] <= 1.0
        else:
            assert stream["stream_steps"] == 8
            assert 0.0 <= stream["online_accuracy"]["overall"] <= 1.0
        return
    assert results["meta_iterations"] == 1 and results["stopped_by"] == "iterations"
    assert results["best_validation"]["iteration"] == 1
    test = results["test"]
    assert 0.0 <= test["accuracy"]["mean"] <= 1.0 and np.isfinite(test["loss"]["mean"])


if __name__ == "__main__":  # a worker: WORK OMNIGLOT_DIR MINI_IMAGENET_DIR CONFIG...
    # A worker never collects its garbage: the dead TensorFlow objects of its runs cost
    # ~0.6 GB by the end, and freeing them (a collection after each run, then the interpreter's
    # teardown) cost ~5% of its time.
    gc.disable()
    run_configs(sys.argv[4:], sys.argv[1], sys.argv[2], sys.argv[3])
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(0)
