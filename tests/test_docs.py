"""The front door: README's Python example runs as written (offline, seconds), every relative
link in README and docs/ leads to a file that exists, and README stays short."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "BUILD.md")] + sorted(
    os.path.join(ROOT, "docs", name) for name in os.listdir(os.path.join(ROOT, "docs"))
    if name.endswith(".md")) + [os.path.join(ROOT, "docs", "results", "continual.md")]


def _readme():
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def test_readme_example_runs_as_written(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", _readme(), re.S)
    assert blocks, "README has no Python example"
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("(10, 1) {'loss': ")


def test_every_relative_link_leads_to_a_file():
    missing = []
    for path in DOCS:
        with open(path) as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            file = os.path.normpath(os.path.join(os.path.dirname(path), target.split("#")[0]))
            if not os.path.exists(file):
                missing.append(f"{os.path.relpath(path, ROOT)} -> {target}")
    assert not missing, missing


def test_every_file_path_in_the_text_exists():
    """Paths written as code (`wtl_tf/...`, `docs/...`, `experiments/...`) name files that
    exist; placeholders (capitals, wildcards) are not paths."""
    missing = []
    for path in DOCS:
        with open(path) as f:
            text = f.read()
        for token in re.findall(r"`([^`\s]+)`", text):
            token = token.rstrip(".,:;")
            if not re.match(r"^(wtl_tf|docs|experiments|benchmarks|tests|datasets|configs|"
                            r"\.ci)/", token) or re.search(r"[A-Z]{3,}|[*{}<>]|\.\.\.", token):
                continue
            if not os.path.exists(os.path.join(ROOT, token.split(":")[0])):
                missing.append(f"{os.path.relpath(path, ROOT)}: {token}")
    assert not missing, missing


def test_readme_is_a_front_door():
    lines = _readme().splitlines()
    assert len(lines) < 300
    first_screen = "\n".join(lines[:40])
    for needed in ("pip install -r requirements.txt", "```python", "python train.py",
                   "python -m pytest -q tests"):
        assert needed in first_screen, needed
