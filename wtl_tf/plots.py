"""Figures of finished runs, drawn with matplotlib (`pip install wtl_tf[plots]`).

    wtl-plot RUN_DIR [RUN_DIR ...] --output_dir=plots          # or: python -m wtl_tf.plots

Each argument is a `train.py` output directory (its results.json, learning_curve.csv and
config.json) or a results record (`experiments/*_records.py`), optionally `PATH:LABEL`.
Runs with the same label (by default the algorithm) are seeds of one method: their curves
are drawn as the mean with a 95% Student-t band across seeds. Written, as PNG and SVG:
- `learning_curves`: the validation metric (`--metric`) against meta-iterations;
- `sparsity`: per-layer mask sparsity along training (runs that learn masks), or along the
  stream for continual runs;
- `R_<label>`: a continual run's accuracy matrix (row i: after task i; column j: task j),
  averaged over the label's seeds.
"""

import argparse
import csv
import json
import os
import sys

import numpy as np

from wtl_tf.meta_test import mean_ci95


FORMATS = ("png", "svg")


class PlotError(Exception):
    """A run that cannot be plotted; the message names it and what is missing."""


def read_run(spec):
    """{'label', 'curve': [row dicts], 'continual': dict or None} of a run directory or a
    record, `PATH[:LABEL]`."""
    path, _, label = spec.partition(":")
    if os.path.isdir(path):
        results = _read_json(os.path.join(path, "results.json"))
        settings = _read_json(os.path.join(path, "config.json"), missing_ok=True) or \
            results.get("config", {})
        curve_path = os.path.join(path, "learning_curve.csv")
        curve = _read_csv(curve_path) if os.path.exists(curve_path) else []
    elif os.path.isfile(path):
        record = _read_json(path)
        if "results" not in record:
            raise PlotError(f"{path} is neither a run directory nor a results record "
                            "(no 'results'): give a train.py --output_dir or a record")
        results, settings = record["results"], record.get("settings", {})
        curve = results.get("learning_curve") if isinstance(
            results.get("learning_curve"), list) else []
    else:
        raise PlotError(f"{path} does not exist: give train.py output directories or "
                        "results records")
    continual = results.get("continual", results if "mask_trace" in results else None)
    return {"label": label or settings.get("algorithm") or os.path.basename(
                os.path.normpath(path)), "curve": curve, "continual": continual}


def _read_json(path, missing_ok=False):
    if not os.path.exists(path):
        if missing_ok:
            return None
        raise PlotError(f"{path} does not exist: is {os.path.dirname(path)} a finished run?")
    with open(path) as f:
        return json.load(f)


def _read_csv(path):
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(f)]


def grouped(runs):
    """{label: [runs]} in first-seen order."""
    groups = {}
    for run in runs:
        groups.setdefault(run["label"], []).append(run)
    return groups


def band(series):
    """(x, mean, half-width) over the runs' (x, y) series at the x all of them have; the
    half-width is NaN-free 0 for a single run."""
    common = sorted(set.intersection(*(set(x) for x, _ in series)))
    values = np.array([[dict(zip(x, y))[k] for k in common] for x, y in series])
    if len(series) == 1:
        return np.array(common), values[0], np.zeros(len(common))
    mean, half = mean_ci95(values, axis=0)
    return np.array(common), mean, half


def _curve_series(run, metric):
    rows = [r for r in run["curve"] if metric in r]
    return [r["iteration"] for r in rows], [r[metric] for r in rows]


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise PlotError("plots need matplotlib: pip install 'wtl_tf[plots]'") from None
    matplotlib.use("Agg")  # files only: no display on servers
    from matplotlib import pyplot

    return pyplot


def _save(figure, output_dir, name, formats):
    paths = []
    for extension in formats:
        path = os.path.join(output_dir, f"{name}.{extension}")
        figure.savefig(path, dpi=120, bbox_inches="tight")
        paths.append(path)
    _pyplot().close(figure)
    return paths


def _draw_band(axes, series, label):
    x, mean, half = band(series)
    line, = axes.plot(x, mean, marker="o", markersize=3,
                      label=f"{label} ({len(series)} seed{'s' * (len(series) > 1)})")
    if len(series) > 1:
        axes.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2,
                          linewidth=0)


def learning_curves(runs, metric, output_dir, formats=FORMATS):
    groups = {label: [r for r in members if _curve_series(r, metric)[0]]
              for label, members in grouped(runs).items()}
    groups = {label: members for label, members in groups.items() if members}
    if not groups:
        return []
    figure, axes = _pyplot().subplots(figsize=(6.4, 4.2))
    for label, members in groups.items():
        _draw_band(axes, [_curve_series(r, metric) for r in members], label)
    axes.set_xlabel("meta-iterations")
    axes.set_ylabel(metric.replace("_", " "))
    axes.grid(alpha=0.3)
    axes.legend(title="mean, 95% band across seeds", fontsize="small")
    return _save(figure, output_dir, "learning_curves", formats)


def _sparsity_series(run):
    """{layer: (x, y)} from a learning curve's sparsity/<layer> columns or a continual run's
    mask trace."""
    if run["continual"] and run["continual"].get("mask_trace"):
        trace = run["continual"]["mask_trace"]
        layers = trace[0]["per_layer"]
        return {layer: ([p["step"] for p in trace], [p["per_layer"][layer] for p in trace])
                for layer in layers}
    columns = sorted({k for r in run["curve"] for k in r if k.startswith("sparsity/")})
    return {c.split("/", 1)[1]: _curve_series(run, c) for c in columns}


def sparsity(runs, output_dir, formats=FORMATS):
    groups = {label: [_sparsity_series(r) for r in members]
              for label, members in grouped(runs).items()}
    groups = {label: series for label, series in groups.items() if series and series[0]}
    if not groups:
        return []
    pyplot = _pyplot()
    figure, panels = pyplot.subplots(1, len(groups), figsize=(6.4 * len(groups), 4.2),
                                     squeeze=False)
    for axes, (label, series) in zip(panels[0], groups.items()):
        for layer in series[0]:
            _draw_band(axes, [s[layer] for s in series if layer in s], layer)
        continual = any(r["continual"] for r in runs if r["label"] == label)
        axes.set_xlabel("stream batches" if continual else "meta-iterations")
        axes.set_ylabel("mask sparsity (fraction of zero gates)")
        axes.set_ylim(0, 1)
        axes.set_title(label)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="x-small", ncol=2)
    return _save(figure, output_dir, "sparsity", formats)


def r_matrices(runs, output_dir, formats=FORMATS):
    paths = []
    for label, members in grouped(runs).items():
        matrices = [np.asarray(r["continual"]["R"]) for r in members
                    if r["continual"] and "R" in r["continual"]]
        if not matrices:
            continue
        figure, axes = _pyplot().subplots(figsize=(5.2, 4.4))
        image = axes.imshow(np.mean(matrices, axis=0), vmin=0, vmax=1, cmap="viridis")
        figure.colorbar(image, ax=axes, label="accuracy")
        from matplotlib.ticker import MaxNLocator

        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("task evaluated")
        axes.set_ylabel("after learning task")
        axes.set_title(f"{label}: R ({len(matrices)} seed{'s' * (len(matrices) > 1)})")
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
        paths += _save(figure, output_dir, f"R_{safe}", formats)
    return paths


def ra_against_la(points, title, path, curve=()):
    """One marker per arm at its mean (LA, RA) with 95% intervals both ways; `points`
    {arm: (LA values, RA values)} (one per seed), the arms named in `curve` drawn as squares
    joined into a line (a reference method's trade-off curve). Returns `path`."""
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=(6, 4.5))
    line = []
    for arm, (la, ra) in points.items():
        (la_mean, la_half), (ra_mean, ra_half) = (
            mean_ci95(np.asarray(v, np.float64)) if len(v) > 1 else (float(v[0]), 0.0)
            for v in (la, ra))
        on_curve = arm in curve
        axes.errorbar(la_mean, ra_mean, xerr=la_half, yerr=ra_half, capsize=2,
                      marker="s" if on_curve else "o", label=f"{arm} ({len(la)} seeds)")
        if on_curve:
            line.append((la_mean, ra_mean))
    if len(line) > 1:
        axes.plot(*zip(*sorted(line)), color="grey", linewidth=1, zorder=0)
    axes.set_xlabel("LA (accuracy on each task right after learning it)")
    axes.set_ylabel("RA (accuracy on every task after the last)")
    axes.set_title(title)
    axes.legend(fontsize=7)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    pyplot.close(figure)
    return path


def plot_runs(specs, output_dir, metric="val_accuracy", formats=FORMATS):
    """Reads the runs, writes every figure that applies; returns the written paths."""
    runs = [read_run(spec) for spec in specs]
    os.makedirs(output_dir, exist_ok=True)
    paths = (learning_curves(runs, metric, output_dir, formats)
             + sparsity(runs, output_dir, formats) + r_matrices(runs, output_dir, formats))
    if not paths:
        raise PlotError(f"nothing to plot: the runs have no {metric!r} curve, no mask "
                        "sparsity and no accuracy matrix (pick another --metric)")
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(prog="wtl-plot", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN[:LABEL]",
                        help="train.py output directories or results records")
    parser.add_argument("--output_dir", default="plots")
    parser.add_argument("--metric", default="val_accuracy",
                        help="the learning_curve.csv column to plot (e.g. val_loss)")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help="comma-separated file types matplotlib writes (png, svg, pdf)")
    args = parser.parse_args(argv)
    try:
        paths = plot_runs(args.runs, args.output_dir, args.metric,
                          tuple(f.strip() for f in args.formats.split(",") if f.strip()))
    except (PlotError, ValueError) as e:
        print(f"wtl-plot: error: {e}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def run():
    """Console entry point (wtl-plot)."""
    sys.exit(main())


if __name__ == "__main__":
    run()
