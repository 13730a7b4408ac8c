"""Settings declared once; what is derived from the declarations; the package's import rules."""

import ast
import dataclasses
import os
import pathlib
import subprocess
import sys

import pytest

from wtl_tf import settings
from wtl_tf.config import ExperimentConfig

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_every_config_field_is_a_declared_setting_and_a_flag():
    import train

    fields = [f.name for f in dataclasses.fields(ExperimentConfig)]
    declared = [s.name for s in settings.all_settings()]
    assert fields == declared
    assert set(declared) <= set(train.FLAGS)
    for s in settings.all_settings():
        assert train.FLAGS[s.name].default == (list(s.default) if s.kind == "list"
                                               and s.default else s.default), s.name
        assert s.help in train.FLAGS[s.name].help


def test_a_setting_declared_twice_differently_is_a_bug():
    name = settings.all_settings()[0].name
    with pytest.raises(ValueError, match="declared twice"):
        settings.declare(settings.Setting(name, "string", "other", "another help"))
    settings.declare(settings.get(name))  # the same declaration again is harmless


def test_declarations_are_checked():
    with pytest.raises(ValueError, match="choices"):
        settings.Setting("x", "enum", "a", "help")
    with pytest.raises(ValueError, match="reads= and scope="):
        settings.Setting("x", "bool", False, "help", reads=lambda c: True)


def test_resume_may_change_exactly_the_resumable_settings():
    from wtl_tf.run_directory import changeable_on_resume

    assert set(changeable_on_resume()) == {
        "meta_iterations", "max_train_minutes", "test_tasks", "export_dir", "verbose",
        "cpu_threads", "tensorboard", "data_dir", "checkpoint_every_minutes",
        "progress_every_seconds", "unroll_inner_steps", "cross_domain", "allow_large_memory"}


def _library_imports():
    for path in sorted((ROOT / "wtl_tf").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                yield path, [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                yield path, [node.module]


def test_the_library_never_imports_the_checkout_root():
    roots = {"datasets", "train", "tests", "benchmarks", "experiments", "helpers"}
    offending = [(str(path.relative_to(ROOT)), name) for path, names in _library_imports()
                 for name in names if name.split(".")[0] in roots]
    assert not offending
    assert not any("sys.path" in p.read_text() for p in (ROOT / "wtl_tf").rglob("*.py"))


def test_no_module_reaches_another_modules_private_names():
    offending = []
    for path in sorted((ROOT / "wtl_tf").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                    "wtl_tf"):
                offending += [(path.name, a.name) for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert not offending


def test_library_modules_define_no_flags_at_import():
    code = ("import importlib, pkgutil, wtl_tf\n"
            "from absl import flags\n"
            "for m in pkgutil.walk_packages(wtl_tf.__path__, 'wtl_tf.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(sorted(name for module, defined in flags.FLAGS.flags_by_module_dict().items()\n"
            "             if 'wtl_tf' in module for name in defined))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_packaging_installs_only_the_library():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["wtl_tf", "wtl_tf.*"]
    scripts = project["project"]["scripts"]
    assert set(scripts) == {"wtl-train", "wtl-evaluate", "wtl-export", "wtl-plot"}
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(__import__(module, fromlist=[function]), function))
    assert not (ROOT / "datasets" / "__init__.py").exists()
    assert list((ROOT / "wtl_tf" / "data" / "splits").glob("*.json"))
