"""Property test of the settings parser and the run preflight: for every declared setting,
random ill-typed, out-of-range and contradictory values are refused before any work starts,
each with one line (a ConfigError, which the programs print as `train.py: error: ...` with
a nonzero exit), and no output directory is left behind."""

import math
import os
import subprocess
import sys

import pytest
from absl import flags
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from wtl_tf import config as _every_declaration  # noqa: F401
from wtl_tf import preflight, settings
from wtl_tf.algorithms import ALGORITHMS
from wtl_tf.cli import train as train_cli
from wtl_tf.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DECLARED = {s.name: s for s in settings.all_settings()}
NUMBERS = [s for s in DECLARED.values() if s.kind in ("integer", "float")]
CHOICES = [s for s in DECLARED.values() if s.kind in ("enum", "bool")]
SCOPED = [s for s in DECLARED.values() if s.reads is not None]
BOOL_WORDS = {"true", "false", "t", "f", "1", "0", "yes", "no", "y", "n"}


def _not_a_number(kind):
    """Text that absl cannot read as an integer (or float)."""
    text = st.text(alphabet="abcxyz!@ ,", min_size=1, max_size=6)
    if kind == "integer":
        return st.one_of(text, st.sampled_from(["1.5", "2e3", "0x", "--", "1_000_000x"]))
    return st.one_of(text, st.sampled_from(["1e", "e5", "1.2.3", "one"]))


def _out_of_range(setting):
    """Numbers outside the declared range (and, for floats, not finite)."""
    options = []
    if setting.low is not None:
        below = setting.low if setting.low_open else setting.low - 1e-9
        if setting.kind == "integer":
            options.append(st.integers(max_value=math.ceil(setting.low) - 1,
                                       min_value=-10**12).map(str))
        else:
            options.append(st.floats(max_value=below, min_value=-1e12,
                                     allow_nan=False).map(repr))
    if setting.high is not None:
        if setting.kind == "integer":
            options.append(st.integers(min_value=int(setting.high) + 1,
                                       max_value=10**12).map(str))
        else:
            options.append(st.floats(min_value=setting.high + 1e-9, max_value=1e12,
                                     allow_nan=False).map(repr))
    if setting.kind == "float":
        options.append(st.sampled_from(["nan", "inf", "-inf"]))
    return st.one_of(*options) if options else None


def _refused(args, tmp_path):
    """The one-line refusal of train.py's flags, resolution and preflight, in this process."""
    before = set(os.listdir(tmp_path))
    flags.FLAGS.unparse_flags()
    try:
        train_cli.read_flags(["train.py", *args])
        config = train_cli.config_from_flags().resolved()
        preflight.check(config)
    except ConfigError as e:
        message = str(e)
    else:
        message = None
    finally:
        flags.FLAGS.unparse_flags()
    assert message is not None, f"{args} was accepted"
    assert "\n" not in message and "Traceback" not in message, message
    assert set(os.listdir(tmp_path)) == before, f"{args} left files behind"
    return message


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    train_cli.define_flags()
    monkeypatch.chdir(tmp_path)


PROFILE = dict(deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture])


@hypothesis_settings(max_examples=150, **PROFILE)
@given(data=st.data())
def test_ill_typed_values_of_every_number_setting_are_refused(data, tmp_path):
    setting = data.draw(st.sampled_from(NUMBERS), label="setting")
    value = data.draw(_not_a_number(setting.kind), label="value")
    message = _refused([f"--{setting.name}={value}"], tmp_path)
    assert f"--{setting.name}" in message


@hypothesis_settings(max_examples=150, **PROFILE)
@given(data=st.data())
def test_out_of_range_values_of_every_number_setting_are_refused(data, tmp_path):
    bounded = [s for s in NUMBERS if _out_of_range(s) is not None]
    setting = data.draw(st.sampled_from(bounded), label="setting")
    value = data.draw(_out_of_range(setting), label="value")
    message = _refused([f"--{setting.name}={value}"], tmp_path)
    assert f"--{setting.name}" in message


@hypothesis_settings(max_examples=60, **PROFILE)
@given(data=st.data())
def test_values_outside_every_choice_setting_are_refused(data, tmp_path):
    setting = data.draw(st.sampled_from(CHOICES), label="setting")
    word = data.draw(st.text(alphabet="abcdefghij_", min_size=1, max_size=8), label="value")
    if setting.kind == "bool":
        word = word if word.lower() not in BOOL_WORDS else word + "x"
    elif word in setting.choices:
        word += "x"
    message = _refused([f"--{setting.name}={word}"], tmp_path)
    assert f"--{setting.name}" in message


def test_every_number_setting_declares_a_range_or_must_be_finite():
    for setting in NUMBERS:
        assert _out_of_range(setting) is not None, setting.name


@hypothesis_settings(max_examples=120, **PROFILE)
@given(data=st.data())
def test_a_setting_the_chosen_algorithm_does_not_read_is_refused(data, tmp_path):
    """Contradictions derived from the declarations: a setting given to an algorithm whose
    runs do not read it."""
    setting = data.draw(st.sampled_from(SCOPED), label="setting")
    algorithm = data.draw(st.sampled_from(sorted(ALGORITHMS)), label="algorithm")
    from wtl_tf.config import ExperimentConfig

    try:
        resolved = ExperimentConfig(algorithm=algorithm).resolved()
    except ConfigError:
        return  # an algorithm that needs more settings than its name
    if setting.reads(resolved):
        return  # read: not a contradiction
    if setting.kind == "enum":
        value = next(c for c in reversed(setting.choices) if c != setting.default)
    else:
        value = {"integer": "2" if setting.default == 3 else "3",
                 "float": "0.25" if setting.default == 0.5 else "0.5",
                 "bool": "false" if setting.default else "true",
                 "string": "x", "list": "a,b"}[setting.kind]
    message = _refused([f"--algorithm={algorithm}", f"--{setting.name}={value}"], tmp_path)
    assert f"--{setting.name}" in message


def test_the_program_prints_one_line_and_exits_nonzero(tmp_path):
    """The whole of stderr is the one line: TensorFlow's start-up notices (oneDNN, no CUDA
    driver, cuInit) are kept off the command line (wtl_tf.cli.quiet)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--ways=abc"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "train.py: error: flag --ways=abc: invalid literal for int() with base 10: 'abc'"]
    assert os.listdir(tmp_path) == []


def test_a_normal_cpu_run_prints_no_alarming_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"),
                           "--meta_iterations=2", "--eval_every=2", "--validation_tasks=2",
                           "--test_tasks=2", f"--output_dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for word in ("cuInit", "oneDNN", "cuda drivers", "deprecated", "Sharding callback",
                 "Traceback", "E0000"):
        assert word not in proc.stderr + proc.stdout, word
