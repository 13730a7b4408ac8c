"""What every results record says about where it came from: the tree's commit and the
machine. Shared by the scripts that write records (continual_records.py,
fewshot_records.py)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def commit():
    """HEAD of the tree the experiment runs from, marked '+modified' when wtl_tf/ differs."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    head = git("rev-parse", "HEAD").strip() or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "wtl_tf").strip())
    return head + ("+modified" if dirty else "")


def parse_value(text):
    """A --set value: JSON when it parses, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def write_record(path, record):
    """Writes atomically, so that an interrupted batch never leaves half a record."""
    with open(path + ".partial", "w") as f:
        json.dump(record, f, indent=1)
    os.replace(path + ".partial", path)


def replace_between(text, markers, block):
    """`text` with what lies between the two marker lines replaced by `block` (generated
    tables in hand-written documents)."""
    begin, end = markers
    if text.count(begin) != 1 or text.count(end) != 1:
        raise SystemExit(f"the document must hold each of {markers} once")
    start, stop = text.index(begin) + len(begin), text.index(end)
    return text[:start] + "\n" + block + text[stop:]
