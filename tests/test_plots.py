"""Figures through matplotlib (wtl_tf.plots, `wtl-plot`) on finished runs and records, and
the report scripts that join experiment records."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

pytest.importorskip("matplotlib", reason="plots need the [plots] extra (matplotlib)")
from wtl_tf import plots  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run_dir(path, algorithm, seed, accuracies, sparsity=None):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"algorithm": algorithm, "seed": seed}))
    (path / "results.json").write_text(json.dumps({"test": {}}))
    columns = ["iteration", "val_accuracy"] + (["sparsity/conv1", "sparsity/head"]
                                               if sparsity else [])
    with open(path / "learning_curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for i, accuracy in enumerate(accuracies):
            row = {"iteration": 100 * (i + 1), "val_accuracy": accuracy}
            if sparsity:
                row.update({"sparsity/conv1": sparsity[i], "sparsity/head": 1 - sparsity[i]})
            writer.writerow(row)
    return str(path)


def test_the_band_is_the_t_interval_across_seeds():
    x, mean, half = plots.band([([1, 2, 3], [0.1, 0.5, 0.9]), ([1, 2], [0.3, 0.7]),
                                ([2, 1], [0.9, 0.5])])
    # only the iterations every seed has; t(2) = 4.303 over three seeds
    assert list(x) == [1, 2]
    assert mean == pytest.approx([0.3, 0.7])
    assert half == pytest.approx([4.303 * 0.2 / np.sqrt(3)] * 2, rel=1e-6)
    x, mean, half = plots.band([([1, 2], [0.4, 0.6])])
    assert list(mean) == [0.4, 0.6] and list(half) == [0, 0]


def test_wtl_plot_writes_png_and_svg_for_seeds_of_two_methods(tmp_path):
    runs = [_run_dir(tmp_path / f"maml{s}", "maml", s, [0.5 + 0.1 * s, 0.6, 0.7])
            for s in range(3)]
    runs += [_run_dir(tmp_path / f"sparse{s}", "sparse_maml", s, [0.6, 0.7, 0.8 - 0.05 * s],
                      sparsity=[0.5, 0.6 + 0.01 * s, 0.7]) for s in range(2)]
    out = tmp_path / "figures"
    proc = subprocess.run([sys.executable, "-m", "wtl_tf.plots", *runs,
                           f"--output_dir={out}"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = sorted(os.path.basename(p) for p in proc.stdout.split())
    assert written == ["learning_curves.png", "learning_curves.svg", "sparsity.png",
                       "sparsity.svg"]
    assert (out / "learning_curves.png").read_bytes().startswith(PNG_SIGNATURE)
    svg = (out / "learning_curves.svg").read_text()
    assert "<svg" in svg and "maml (3 seeds)" in svg and "sparse_maml (2 seeds)" in svg


def test_continual_records_give_the_accuracy_matrix_and_the_mask_along_the_stream(tmp_path):
    records = os.path.join(ROOT, "docs", "results", "continual", "rotated_omniglot")
    specs = [os.path.join(records, f"rotated_omniglot_sparse_la_maml_s{s}.json") + ":sparse"
             for s in (0, 1)]
    paths = plots.plot_runs(specs, str(tmp_path), formats=("png", "pdf"))
    names = sorted(os.path.basename(p) for p in paths)
    assert names == ["R_sparse.pdf", "R_sparse.png", "sparsity.pdf", "sparsity.png"]
    assert (tmp_path / "R_sparse.pdf").read_bytes().startswith(b"%PDF")


def test_a_path_that_is_no_run_is_one_line(tmp_path):
    (tmp_path / "notes.json").write_text("{}")
    for argument, expected in ((tmp_path / "missing", "does not exist"),
                               (tmp_path / "notes.json", "neither a run directory")):
        proc = subprocess.run([sys.executable, "-m", "wtl_tf.plots", str(argument),
                               f"--output_dir={tmp_path}"], capture_output=True, text=True,
                              cwd=ROOT, timeout=300,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines()[-1].startswith("wtl-plot: error: ")
        assert expected in proc.stderr


def test_gradient_sharing_merge_joins_side_by_side_sweeps(tmp_path):
    """--merge adds the runs the output lacks (keeping its own copy of a run both hold) and
    prints the tables, running nothing."""
    import subprocess

    def record(alpha, seed, algorithm, reached):
        return {"algorithm": algorithm, "inner_lr": alpha, "seed": seed,
                "iterations_to_target": reached, "diverged": False, "seconds": 1.0,
                "curve": [[50, 0.5], [100, 0.81]], "test_accuracy": 0.8, "test_ci95": 0.01}

    (tmp_path / "out.json").write_text(json.dumps(
        {"flags": {"target": 0.8, "seeds": ["0"]}, "runs": [record(0.4, 0, "maml", 100)]}))
    (tmp_path / "a.json").write_text(json.dumps(
        {"flags": {}, "runs": [record(0.4, 0, "maml", 999), record(0.4, 0, "grad_sharing", 50)]}))
    (tmp_path / "b.json").write_text(json.dumps(
        {"flags": {}, "runs": [record(1.0, 1, "maml", None)]}))
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "experiments", "gradient_sharing.py")
    done = subprocess.run([sys.executable, script, f"--output={tmp_path / 'out.json'}",
                           f"--merge={tmp_path / 'a.json'},{tmp_path / 'b.json'}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    merged = json.loads((tmp_path / "out.json").read_text())
    assert merged["flags"]["target"] == 0.8 and merged["flags"]["seeds"] == ["0", "1"]
    runs = merged["runs"]
    assert [(r["inner_lr"], r["seed"], r["algorithm"], r["iterations_to_target"])
            for r in runs] == [(0.4, 0, "maml", 100), (0.4, 0, "grad_sharing", 50),
                               (1.0, 1, "maml", None)]
    assert "| 0.4 | 0 |" in done.stdout and "| 1 | 1 |" in done.stdout


def _warpgrad_record(path, seed, runs):
    with open(path, "w") as f:
        json.dump({"flags": {"seed": seed}, "runs": runs}, f)


def _warpgrad_run(method, per_task):
    return {"method": method, "meta_iterations": 10, "accuracy": float(np.mean(per_task)),
            "ci95": 0.0, "per_task_accuracy": per_task}


def test_warpgrad_report_joins_one_file_per_method_and_pairs_by_task(tmp_path):
    import warpgrad_report

    _warpgrad_record(tmp_path / "a.json", 1, [_warpgrad_run("warp_leap", [0.9, 0.8, 0.7])])
    _warpgrad_record(tmp_path / "b.json", 1, [_warpgrad_run("leap", [0.8, 0.8, 0.5])])
    seeds = warpgrad_report.load([tmp_path / "a.json", tmp_path / "b.json"])
    assert [s for s, _ in seeds] == [1] and set(seeds[0][1]) == {"warp_leap", "leap"}
    table = warpgrad_report.table(seeds)
    # paired differences 0.1, 0.0, 0.2: mean +10.0 points, t(2) interval 4.303 * 0.1 / sqrt 3
    assert "+10.0 ± 24.8 points (better on 67% of 3 tasks)" in table
    # per-seed intervals come from the per-task scores, not the record's stored ci95 of 0
    assert "80.0 ± 24.8% (10 meta-it)" in table
    assert warpgrad_report.per_seed_differences(seeds) == (
        "seed 1, Warp-Leap minus: Leap +10.0 ± 24.8 points")
    _warpgrad_record(tmp_path / "c.json", 1, [_warpgrad_run("leap", [0.1, 0.1, 0.1])])
    with pytest.raises(SystemExit, match="seed 1 leap is already in an earlier file"):
        warpgrad_report.load([tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"])
