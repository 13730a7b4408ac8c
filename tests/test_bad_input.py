"""Bad input gives one line that names the problem and the fix, and leaves no results.

Every case runs what `python train.py ARGS` runs (flags -> config -> wtl_tf.experiment.run)
in this process and checks the exact line train.py prints; README's "Bad input" table is
this list, checked row by row (regenerate it with `python tests/test_bad_input.py`).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

import train  # noqa: E402
from wtl_tf import experiment  # noqa: E402
from wtl_tf.errors import WtlError  # noqa: E402
from wtl_tf.run_directory import RunLock  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHORT = ["--meta_iterations=4", "--eval_every=2", "--validation_tasks=2", "--test_tasks=2",
         "--notensorboard", "--verbose=0"]

# (what is wrong, train.py arguments, setup in the working directory, the line printed)
CASES = [
    ("unknown algorithm", ["--algorithm=reptile"], None,
     "unknown algorithm 'reptile'; choose one of"),
    ("zero ways", ["--dataset=omniglot", "--ways=0"], None,
     "--ways must be a positive integer, got 0"),
    ("negative shots", ["--shots=-2"], None, "--shots must be a positive integer, got -2"),
    ("negative inner steps", ["--inner_steps=-1"], None,
     "--inner_steps must be an integer >= 0, got -1"),
    ("unknown dataset", ["--dataset=imagenet21k"], None, "unknown dataset 'imagenet21k'"),
    ("ways for a regression task", ["--ways=5"], None,
     "sinusoid is a regression task: --ways does not apply"),
    ("vectorising a conv net", ["--dataset=omniglot", "--vectorize_tasks"], None,
     "--vectorize_tasks applies to MLP task networks"),
    ("zero checkpoint interval", ["--checkpoint_every_minutes=0"], None,
     "--checkpoint_every_minutes must be a finite number > 0, got 0.0"),
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
    ("a second run on a busy directory", ["--output_dir=run"], "locked_run",
     "output directory 'run' is in use by pid"),
    ("folder dataset without a split", ["--dataset=folder", "--data_dir=."], None,
     "--dataset=folder needs --split"),
]


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
    elif kind in ("finished_run", "locked_run"):
        _run_train(["--output_dir=run"])
        if kind == "locked_run":
            lock = RunLock("run")
            lock.__enter__()
            return lock
    return None


def _run_train(args):
    """What train.main does, in this process: the line it would print, or None."""
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train.py", *SHORT, *args])
    try:
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
    if setup not in ("finished_run", "locked_run"):
        assert not os.path.exists("run/results.json") and not os.path.exists(
            "runs/default/results.json")
    else:
        assert open("run/results.json").read() == results_before
    row = f"| {what} | `{' '.join(args)}` | {expected} |"
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert row in readme, f"README's bad-input table lacks (or has an old) row:\n{row}"


@pytest.fixture(autouse=True)
def _clean_flags():
    yield
    flags.FLAGS.unparse_flags()  # later tests that parse flags start clean


if __name__ == "__main__":
    print("| bad input | train.py arguments | the line printed contains |")
    print("|---|---|---|")
    for what, args, _, expected in CASES:
        print(f"| {what} | `{' '.join(args)}` | {expected} |")
