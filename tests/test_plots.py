"""The README's figures: the PNG writer, the line plot's geometry, and the figure script on
run records in the formats train.py and experiments/gradient_sharing.py write."""

import csv
import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "experiments"))

import plot_curves  # noqa: E402
import png_plot  # noqa: E402


def test_png_decodes_to_the_same_pixels():
    pixels = np.random.default_rng(0).integers(0, 256, (7, 11, 3), dtype=np.uint8)
    decoded = tf.io.decode_png(png_plot.png_bytes(pixels)).numpy()
    np.testing.assert_array_equal(decoded, pixels)


def test_a_series_is_drawn_where_its_values_map_and_nowhere_else():
    plot = png_plot.LinePlot(title="t", x_label="x", y_label="y", x_range=(0, 10), y_range=(0, 1))
    plot.add([0, 10], [0.5, 0.5], color=png_plot.RED, markers=False)
    canvas = png_plot.Canvas(400, 300)
    to_pixels = plot.draw(canvas, 0, 0, 400, 300)
    red = np.all(canvas.pixels == png_plot.RED, axis=-1)
    x, y = (int(round(float(v))) for v in to_pixels(5, 0.5))
    assert red[y, x]
    rows = np.nonzero(red.any(axis=1))[0]
    assert rows.min() >= y - 1 and rows.max() <= y + 1  # a horizontal line, 2 px wide
    _, y_quarter = to_pixels(5, 0.25)
    assert y_quarter > y  # larger values are higher up
    assert not red[int(y_quarter)].any()


def test_text_is_drawn_and_an_unknown_character_is_refused():
    one = png_plot.text_bitmap("1")
    assert one.shape == (9 * png_plot.SCALE, 6 * png_plot.SCALE)
    assert one[:, 2 * png_plot.SCALE].sum() == 7 * png_plot.SCALE  # the 1's full-height stem
    assert one[:, 5 * png_plot.SCALE:].sum() == 0  # the spacing column stays blank
    with pytest.raises(ValueError, match="no glyph for '€'"):
        png_plot.text_bitmap("5 €")


def test_ticks_are_round_and_cover_the_range():
    ticks, step = png_plot.nice_ticks(0.37, 0.93)
    assert step == pytest.approx(0.1) and ticks[0] == pytest.approx(0.4)
    assert ticks[-1] == pytest.approx(0.9)
    assert png_plot.tick_label(-1e-17, 0.1) == "0.0"


def test_figures_from_a_learning_curve_and_a_sharing_sweep(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "learning_curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["iteration", "wall_time_s", "val_accuracy"])
        writer.writeheader()
        writer.writerows({"iteration": 50 * i, "wall_time_s": i, "val_accuracy": 0.1 * i}
                         for i in range(1, 5))
    pixels = plot_curves.runs_figure([f"{run}:MAML"], "val_accuracy", "curve")
    assert pixels.shape == (420, 640, 3)
    assert np.all(pixels == png_plot.BLUE, axis=-1).sum() > 100
    with pytest.raises(SystemExit, match="no column 'loss'"):
        plot_curves.runs_figure([str(run)], "loss", "")

    sweep = {"flags": {"target": 0.8}, "runs": [
        {"algorithm": a, "inner_lr": lr, "seed": 0, "curve": [[50, 0.4], [100, 0.7]]}
        for lr in (0.1, 0.4) for a in ("maml", "grad_sharing")]}
    pixels = plot_curves.sharing_figure(json.loads(json.dumps(sweep)))
    assert pixels.shape == (420, 2 * 560, 3)  # one panel per inner learning rate
    for color in (png_plot.BLUE, png_plot.ORANGE):
        assert np.all(pixels == color, axis=-1).sum() > 100


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
