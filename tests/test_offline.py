"""Without the Omniglot archives the suite still runs every test that needs no data: those
that need them are skipped with one line naming WTL_OMNIGLOT_DIR (and fail instead under
WTL_REQUIRE_OMNIGLOT=1, as in CI). Continual runs fetch the archives like few-shot runs when
--data_dir is unset. The reference flagfiles ship inside the package."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pytest(tmp_path, *extra_env):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", WTL_OMNIGLOT_DIR=str(tmp_path / "none"))
    env.pop("WTL_REQUIRE_OMNIGLOT", None)
    env.update(extra_env)
    # One test that needs the archives and one that does not.
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "tests/test_omniglot.py::test_images_are_the_archive_pngs_resized",
         "tests/test_signals.py::test_a_second_ctrl_c_during_training_stops_at_once"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_without_the_archives_data_tests_skip_with_one_line_and_the_rest_run(tmp_path):
    proc = _pytest(tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 passed, 1 skipped" in proc.stdout
    assert "the Omniglot archives were not found or fetched: set WTL_OMNIGLOT_DIR" in proc.stdout
    assert "INTERNALERROR" not in proc.stdout + proc.stderr


def test_ci_fails_instead_of_skipping_when_the_archives_are_missing(tmp_path):
    proc = _pytest(tmp_path, ("WTL_REQUIRE_OMNIGLOT", "1"))
    assert proc.returncode == 1 and "1 passed" in proc.stdout and "1 error" in proc.stdout


def test_continual_runs_download_the_archives_when_data_dir_is_unset(monkeypatch):
    from wtl_tf.continual import building
    from wtl_tf.data import omniglot

    calls = []
    monkeypatch.setattr(omniglot, "load", lambda data_dir, names, image_size, allow_download:
                        calls.append((data_dir, allow_download)))
    building._omniglot.cache_clear()
    try:
        building._omniglot(None)
        building._omniglot("/given")
    finally:
        building._omniglot.cache_clear()
    assert calls == [(None, True), ("/given", False)]  # None: the cache, downloaded


def test_the_reference_flagfiles_ship_in_the_package():
    import tomllib

    from wtl_tf.cli import flagfiles

    package = os.path.join(ROOT, "wtl_tf")
    assert os.path.dirname(flagfiles.CONFIG_DIR) == package
    assert "omniglot_20way_maml" in flagfiles.config_names()
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        data = tomllib.load(f)["tool"]["setuptools"]["package-data"]
    assert "configs/*.cfg" in data["wtl_tf"]
