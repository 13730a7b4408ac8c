"""Bad input gives one line that names the problem and the fix, and leaves no results.

Every case runs what `python train.py ARGS` runs (flags -> config -> wtl_tf.experiment.run)
in this process and checks the exact line train.py prints; the "Bad input" table of
docs/reliability.md is this list, checked row by row (regenerate it with
`python tests/test_bad_input.py`).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

import train  # noqa: E402
from wtl_tf.cli import train as train_cli  # noqa: E402
from wtl_tf import experiment  # noqa: E402
from wtl_tf.algorithms import CONTINUAL_ALGORITHMS  # noqa: E402
from wtl_tf.errors import WtlError  # noqa: E402
from wtl_tf.run_directory import ExportLock, RunLock  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHORT = ["--meta_iterations=4", "--eval_every=2", "--validation_tasks=2", "--test_tasks=2",
         "--notensorboard", "--verbose=0"]

# (what is wrong, train.py arguments, setup in the working directory, the line printed)
CASES = [
    ("unknown algorithm", ["--algorithm=reptile"], None,
     "flag --algorithm=reptile: value should be one of <maml"),
    ("zero ways", ["--dataset=omniglot", "--ways=0"], None,
     "flag --ways=0: --ways must be >= 1"),
    ("negative shots", ["--shots=-2"], None, "flag --shots=-2: --shots must be >= 1"),
    ("negative inner steps", ["--inner_steps=-1"], None,
     "flag --inner_steps=-1: --inner_steps must be >= 0"),
    ("unknown dataset", ["--dataset=imagenet21k"], None,
     "flag --dataset=imagenet21k: value should be one of <sinusoid"),
    ("ways for a regression task", ["--ways=5"], None,
     "sinusoid is a regression task: --ways does not apply"),
    ("vectorising a conv net", ["--dataset=omniglot", "--vectorize_tasks"], None,
     "--vectorize_tasks applies to MLP task networks"),
    ("zero checkpoint interval", ["--checkpoint_every_minutes=0"], None,
     "flag --checkpoint_every_minutes=0.0: --checkpoint_every_minutes must be > 0"),
    ("budget not a multiple of steps per call", ["--meta_iterations=10",
                                                 "--steps_per_execution=3"], None,
     "--meta_iterations (10) must be a multiple of --steps_per_execution (3)"),
    ("a setting the algorithm does not read", ["--algorithm=maml", "--mask_init=kaiming"], None,
     "--mask_init=kaiming is not read by --algorithm=maml"),
    ("Meta-SGD given an inner learning rate", ["--algorithm=meta_sgd", "--inner_lr=0.1"], None,
     "--inner_lr=0.1 is not read by --algorithm=meta_sgd"),
    ("warp options at depth 1", ["--dataset=omniglot_alphabets", "--warp_activation=relu"], None,
     "--warp_activation=relu is not read by --algorithm=sparse_maml"),
    ("an update chain for Leap", ["--algorithm=leap", "--dataset=omniglot_alphabets",
                                  "--update_rules=binary_mask"], None,
     "--update_rules=('binary_mask',) is not read by --algorithm=leap"),
    ("Warp-Leap on several devices", ["--algorithm=warp_leap", "--dataset=omniglot_alphabets",
                                      "--distribution=mirrored"], None,
     "--distribution=mirrored does not support --algorithm=warp_leap"),
    ("gradient sharing on several devices", ["--algorithm=grad_sharing",
                                             "--distribution=mirrored"], None,
     "--distribution=mirrored does not support --algorithm=grad_sharing"),
    ("output directory under a file", ["--output_dir=a_file/run"], "file:a_file",
     "output directory 'a_file/run' is not writable"),
    ("missing data directory", ["--dataset=omniglot", "--data_dir=no/such/dir"], None,
     "--data_dir 'no/such/dir' does not exist; check the path"),
    ("only the small Omniglot archives", ["--dataset=omniglot", "--data_dir=omniglot"],
     "omniglot", "use --split=omniglot_small_alphabets"),
    ("corrupt archive", ["--dataset=omniglot", "--data_dir=corrupt",
                         "--split=omniglot_small_alphabets"], "corrupt",
     "corrupt/images_background_small1.zip has md5"),
    ("more ways than classes", ["--dataset=omniglot", "--data_dir=omniglot", "--ways=200",
                                "--split=omniglot_small_alphabets"], "omniglot",
     "200-way episodes need at least 200 classes"),
    ("diverging training (NaN loss)", ["--inner_lr=1e30"], None,
     "meta-loss became nan at meta-iteration 1"),
    ("export over the run directory", ["--output_dir=run", "--export_dir=run"], None,
     "--export_dir 'run' would replace the run directory 'run'"),
    ("export over someone's files", ["--export_dir=thesis"], "thesis",
     "--export_dir 'thesis' holds files that are not a wtl_tf export"),
    ("export path under a file", ["--export_dir=a_file/export"], "file:a_file",
     "--export_dir 'a_file/export' cannot be created: "),
    ("resume with another learning rate", ["--output_dir=run", "--outer_lr=0.5"], "finished_run",
     "this --output_dir holds a run with other settings: --outer_lr (saved 0.001, now 0.5)"),
    ("resume after config.json was deleted", ["--output_dir=run", "--inner_lr=0.05"],
     "finished_run_without_config", "--inner_lr (saved 0.01, now 0.05)"),
    ("resume with a truncated config.json", ["--output_dir=run"], "finished_run_truncated_config",
     "run/config.json cannot be read"),
    ("a second run exporting to the same path at once", ["--export_dir=model"], "locked_export",
     "--export_dir 'model' is being written by pid"),
    ("a second run on a busy directory", ["--output_dir=run"], "locked_run",
     "output directory 'run' is in use by pid"),
    ("an image too large to decode", ["--dataset=folder", "--data_dir=photos",
                                      "--split=split"], "huge_png",
     "huge.png is too large to decode: 30000x30000 pixels, over TensorFlow's limit"),
    ("folder dataset without a split", ["--dataset=folder", "--data_dir=."], None,
     "--dataset=folder needs --split"),
    ("negative seed", ["--seed=-1"], None,
     "flag --seed=-1: --seed must be >= 0 and <= 2147483647"),
    ("a word for a number", ["--ways=abc"], None,
     "flag --ways=abc: invalid literal for int() with base 10: 'abc'"),
    ("a misspelt flag", ["--meta_batchsize=4"], None,
     "Unknown command line flag 'meta_batchsize'"),
    ("a choice that does not exist", ["--order=third"], None,
     "flag --order=third: value should be one of <first|second>"),
    ("a word for a switch", ["--tensorboard=maybe"], None,
     "flag --tensorboard=maybe: ('Non-boolean argument to boolean flag', 'maybe')"),
    ("not a number", ["--inner_lr=nan"], None, "flag --inner_lr=nan: --inner_lr must be > 0"),
    ("a negative time budget", ["--max_train_minutes=-1"], None,
     "flag --max_train_minutes=-1.0: --max_train_minutes must be > 0"),
    ("second order for first-order MAML", ["--algorithm=fomaml", "--order=second"], None,
     "--algorithm=fomaml is first-order by definition: --order=second contradicts it"),
    ("second order for Leap", ["--algorithm=leap", "--dataset=omniglot_alphabets",
                               "--order=second"], None,
     "--algorithm=leap is first-order by definition: --order=second contradicts it"),
    ("a meta-batch no machine holds", ["--meta_batch_size=100000000"], None,
     "lower --shots, --queries, --ways, --inner_steps, --meta_batch_size, or pass "
     "--allow_large_memory"),
    ("more shots than memory", ["--shots=1000000000"], None,
     "or pass --allow_large_memory"),
    ("a continual stream longer than memory", ["--algorithm=la_maml",
                                               "--stream_tasks=10000000"], None,
     "lower --stream_tasks, or pass --allow_large_memory"),
    ("an OSAKA stream longer than memory", ["--algorithm=continual_maml",
                                            "--stream_steps=10000000000"], None,
     "lower --stream_steps, or pass --allow_large_memory"),
    ("an unknown shipped configuration", ["--config=omniglot_maml"], None,
     "--config=omniglot_maml is not a shipped configuration; choose one of"),
    ("a missing flagfile", ["--flagfile=no/such.cfg"], None,
     "--flagfile 'no/such.cfg' does not exist; check the path"),
    ("a data directory that is the archive", ["--dataset=omniglot",
                                               "--data_dir=omniglot/images_background_small1.zip",
                                               "--split=omniglot_small_alphabets"], "omniglot",
     "--data_dir 'omniglot/images_background_small1.zip' is a file; give the directory"),
    ("a continual run given the archive", ["--algorithm=la_maml",
                                           "--data_dir=omniglot/images_background_small1.zip"],
     "omniglot", "--data_dir 'omniglot/images_background_small1.zip' is a file"),
    ("a negative mask step size", ["--algorithm=sparse_la_maml", "--mask_lr=-1"], None,
     "flag --mask_lr=-1.0: --mask_lr must be >= 0"),
    ("sparse-La-MAML given La-MAML's rate step", ["--algorithm=sparse_la_maml",
                                                  "--meta_lr=0.3"], None,
     "--meta_lr=0.3 is not read by --algorithm=sparse_la_maml"),
    ("a mask step size without a mask", ["--algorithm=la_maml", "--mask_lr=1"], None,
     "--mask_lr=1.0 is not read by --algorithm=la_maml"),
    ("an OSAKA stream for La-MAML", ["--algorithm=la_maml", "--stream=osaka_omniglot"], None,
     "--stream=osaka_omniglot is not a stream of --algorithm=la_maml"),
    ("chunks larger than the batch", ["--algorithm=la_maml", "--chunk_size=20"], None,
     "--chunk_size (20) is larger than --stream_batch (10)"),
    ("no patience", ["--algorithm=continual_maml", "--pretrain_patience=0"], None,
     "flag --pretrain_patience=0: --pretrain_patience must be >= 1"),
    ("a probability above one", ["--algorithm=continual_maml", "--stationarity=2"], None,
     "flag --stationarity=2.0: --stationarity must be >= 0 and <= 1"),
]


# Faults that are not command lines: (the fault, what the user gets, the test that shows it).
FAULTS = [
    ("the disk fills while the best weights are written",
     "one line: no space left on the device of DIR (free, needed), the newest checkpoint "
     "kept; no partial file, no h5py traceback",
     "tests/test_disk_full.py::test_a_disk_too_full_for_the_best_weights_is_one_line"),
    ("h5py itself fails on a full disk",
     "the same line; its partial file removed, its handles' tracebacks dropped",
     "tests/test_disk_full.py::test_h5py_failing_on_a_full_disk_leaves_no_partial_file_and_no_"
     "traceback"),
    ("a continual run resumed after config.json was deleted, with another value",
     "refused in one line naming the setting: the settings are kept inside every checkpoint",
     "tests/test_resume.py::test_a_continual_resume_is_checked_against_the_settings_inside_its_"
     "checkpoint"),
    ("float64 or int64 images given to an exported model (NumPy's defaults)",
     "one line: images must be uint8, with the conversion to use",
     "tests/test_export_and_logging.py::test_loaded_model_explains_float_images_empty_queries_"
     "and_negative_steps"),
    ("int64 labels or inner_steps given to an exported model",
     "accepted (cast at the boundary), the same predictions as int32",
     "tests/test_export_and_logging.py::test_loaded_model_accepts_numpy_default_labels_and_steps"),
    ("float64 inputs given to an exported regression model",
     "accepted (cast at the boundary)",
     "tests/test_export_and_logging.py::test_a_regression_export_accepts_float64_inputs"),
    ("Ctrl-C / SIGTERM inside one long compiled step (Warp-Leap: minutes)",
     "stopped within seconds (after a write in progress), one line, exit 130 / 143; the "
     "checkpoints already written are kept",
     "tests/test_signals.py::test_a_signal_inside_a_long_compiled_call_stops_within_seconds_"
     "after_a_pending_write"),
    ("a first meta-step that takes minutes",
     "a line after 20 s and every 30 s: how long it has run, how far it is, the time to go",
     "tests/test_signals.py::test_the_first_step_reports_how_far_it_is_while_it_runs"),
    ("Ctrl-C after \"checkpoint saved\"",
     "the process ends at once (no wait for TensorFlow's teardown), exit 130",
     "tests/test_run_directory.py::test_sigint_checkpoints_at_a_step_boundary_and_says_how_to_"
     "resume"),
    ("--help, --helpfull of any program",
     "the help, exit status 0",
     "tests/test_bad_input.py::test_help_flags_exit_0"),
    ("the test suite offline without the archives",
     "one line naming WTL_OMNIGLOT_DIR, no download lines",
     "tests/test_download.py::test_the_test_suite_offline_says_one_thing_not_keras_download_"
     "lines"),
    ("rotated Omniglot episodes on an AVX-512 CPU",
     "no oneDNN uint8 error line (rotations by a pixel gather, equal to tf.image.rot90)",
     "tests/test_bad_input.py::test_rotations_print_no_onednn_error_and_equal_rot90"),
    ("wtl-export and wtl-evaluate",
     "their own lines only, no TensorFlow info lines",
     "tests/test_run_directory.py::test_wtl_export_prints_its_path_and_no_tensorflow_info_"
     "lines"),
]


def _fault_row(fault, outcome, test):
    return f"| {fault} | {outcome} | `{test}` |"


@pytest.mark.parametrize("fault,outcome,test", FAULTS, ids=[f[0] for f in FAULTS])
def test_every_fault_row_names_a_test_that_exists(fault, outcome, test):
    path, name = test.split("::")
    with open(os.path.join(ROOT, path)) as f:
        assert f"def {name}(" in f.read(), f"{test} does not exist"
    with open(os.path.join(ROOT, "docs", "reliability.md")) as f:
        assert _fault_row(fault, outcome, test) in f.read(), (
            "docs/reliability.md's faults table lacks (or has an old) row; regenerate it with "
            "python tests/test_bad_input.py")


@pytest.mark.parametrize("program", [["train.py", "--helpfull"], ["train.py", "--help"],
                                     ["-m", "wtl_tf.cli.export", "--helpshort"]])
def test_help_flags_exit_0(program):
    import subprocess

    done = subprocess.run([sys.executable, *program], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ,
                                                           TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-1000:]
    assert "--output_dir" in done.stdout + done.stderr


_ROTATE = r"""
import numpy as np, tensorflow as tf
from wtl_tf.episodes import rotate_classes
images = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 3, 7, 7, 2)), tf.uint8)
tf.function(rotate_classes)(images, tf.constant([0, 1, 2, 3]))
print("rotated")
"""


def test_rotations_print_no_onednn_error_and_equal_rot90():
    import subprocess

    import numpy as np
    import tensorflow as tf

    from wtl_tf.episodes import rotate_classes

    done = subprocess.run([sys.executable, "-c", _ROTATE], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "rotated", done.stderr[-2000:]
    assert "oneDNN supports DT_UINT8" not in done.stderr
    images = tf.constant(np.random.default_rng(1).integers(0, 256, (4, 2, 5, 5, 1)), tf.uint8)
    rotated = rotate_classes(images, tf.constant([3, 2, 1, 0])).numpy()
    for c, k in enumerate([3, 2, 1, 0]):  # the independent computation: TensorFlow's rot90
        np.testing.assert_array_equal(rotated[c], tf.image.rot90(images[c], k).numpy())


def _setup(kind, tmp_path, omniglot_dir):
    if kind is None:
        return None
    if kind.startswith("file:"):
        (tmp_path / kind[5:]).write_text("not a directory")
    elif kind == "omniglot":
        (tmp_path / "omniglot").mkdir()
        for name in ("images_background_small1.zip", "images_background_small2.zip"):
            os.symlink(os.path.join(omniglot_dir, name), tmp_path / "omniglot" / name)
    elif kind == "corrupt":
        (tmp_path / "corrupt").mkdir()
        (tmp_path / "corrupt" / "images_background_small1.zip").write_bytes(b"PK\x03\x04junk")
    elif kind == "thesis":
        (tmp_path / "thesis").mkdir()
        (tmp_path / "thesis" / "chapter1.tex").write_text("months of work")
    elif kind == "huge_png":  # a valid PNG of 30000 x 30000 black pixels, 0.9 MB on disk
        for name, size in (("a", 30000), ("b", 4), ("c", 4)):
            (tmp_path / "photos" / name).mkdir(parents=True)
            filename = "huge.png" if size > 4 else "small.png"
            (tmp_path / "photos" / name / filename).write_bytes(_black_png(size, size))
        (tmp_path / "split").mkdir()
        for split, name in (("train", "a"), ("val", "b"), ("test", "c")):
            (tmp_path / "split" / f"{split}.txt").write_text(name + "\n")
    elif kind == "locked_export":
        lock = ExportLock("model")
        lock.__enter__()
        return lock
    elif kind.startswith("finished_run") or kind == "locked_run":
        _run_train(["--output_dir=run"])
        if kind == "finished_run_without_config":
            os.remove("run/config.json")
        elif kind == "finished_run_truncated_config":
            text = open("run/config.json").read()
            with open("run/config.json", "w") as f:
                f.write(text[:len(text) // 2])
        if kind == "locked_run":
            lock = RunLock("run")
            lock.__enter__()
            return lock
    return None


def _black_png(width, height):
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    compressor, row = zlib.compressobj(9), b"\0" * (width + 1)  # filter byte + grey pixels
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


def _run_train(args):
    """What train.main does, in this process: the line it would print, or None."""
    flags.FLAGS.unparse_flags()
    continual = any(a.startswith("--algorithm=") and a.split("=", 1)[1] in CONTINUAL_ALGORITHMS
                    for a in args)
    try:
        train_cli.read_flags(["train.py", *(["--notensorboard"] if continual else SHORT),
                              *args])
        config = train.config_from_flags().resolved()
        experiment.run(config)
    except WtlError as e:
        return f"train.py: error: {e}"
    return None


@pytest.mark.parametrize("what,args,setup,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_that_names_the_fix(what, args, setup, expected, tmp_path,
                                                     monkeypatch, omniglot_dir):
    monkeypatch.chdir(tmp_path)
    lock = _setup(setup, tmp_path, omniglot_dir)
    results_before = os.path.exists("run/results.json") and open("run/results.json").read()
    try:
        line = _run_train(args)
    finally:
        if lock is not None:
            lock.__exit__(None, None, None)
    assert line is not None and expected in line, line
    assert "\n" not in line and "Traceback" not in line
    # nothing new was written as a result
    if not (setup or "").startswith("finished_run") and setup != "locked_run":
        assert not os.path.exists("run/results.json") and not os.path.exists(
            "runs/default/results.json")
    else:
        assert open("run/results.json").read() == results_before
    row = f"| {what} | `{' '.join(args)}` | {expected} |"
    with open(os.path.join(ROOT, "docs", "reliability.md")) as f:
        table = f.read()
    assert row in table, f"docs/reliability.md's bad-input table lacks (or has an old) row:\n{row}"


@pytest.fixture(autouse=True)
def _clean_flags():
    yield
    flags.FLAGS.unparse_flags()  # later tests that parse flags start clean


if __name__ == "__main__":
    print("| bad input | train.py arguments | the line printed contains |")
    print("|---|---|---|")
    for what, args, _, expected in CASES:
        print(f"| {what} | `{' '.join(args)}` | {expected} |")
    print()
    print("| fault | what happens | shown by |")
    print("|---|---|---|")
    for fault in FAULTS:
        print(_fault_row(*fault))
