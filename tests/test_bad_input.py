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
from wtl_tf.run_directory import RunLock  # noqa: E402

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
    ("a second run on a busy directory", ["--output_dir=run"], "locked_run",
     "output directory 'run' is in use by pid"),
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
