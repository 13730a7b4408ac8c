"""The README's learning-curve figures (PNG), from the runs' own records.

    # validation accuracy against meta-iterations of train.py runs (their learning_curve.csv)
    python experiments/plot_curves.py --runs=runs/omniglot_20way_maml:MAML,runs/omniglot_20way_sparse_maml:sparse-MAML \
        --title="20-way 1-shot Omniglot" --output=docs/plots/omniglot_20way.png

    # the gradient-sharing sweep (experiments/gradient_sharing.py's results file): one panel per
    # inner learning rate, every seed's validation curve, MAML against sharing
    python experiments/plot_curves.py --sharing=runs/gradient_sharing.json \
        --output=docs/plots/gradient_sharing.png
"""

import csv
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402

import png_plot  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """Only when run as a program: the tests import this module next to train.py's flags."""
    flags.DEFINE_list("runs", [], "train.py run directories, each optionally DIR:LABEL")
    flags.DEFINE_string("sharing", None, "results file of experiments/gradient_sharing.py")
    flags.DEFINE_string("metric", "val_accuracy", "learning_curve.csv column to plot")
    flags.DEFINE_string("title", "", "figure title (--runs)")
    flags.DEFINE_string("output", None, "PNG file to write")

NAMES = {"maml": "MAML", "grad_sharing": "gradient sharing"}
COLORS = (png_plot.BLUE, png_plot.ORANGE, png_plot.GREEN, png_plot.RED, png_plot.PURPLE)


def read_curve(run_dir, metric):
    path = os.path.join(run_dir, "learning_curve.csv")
    if not os.path.exists(path):
        raise SystemExit(f"{path} does not exist: --runs takes train.py output directories")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and metric not in rows[0]:
        raise SystemExit(f"{path} has no column {metric!r}; it has {sorted(rows[0])}")
    return [int(r["iteration"]) for r in rows], [float(r[metric]) for r in rows]


def runs_figure(specs, metric, title):
    plot = png_plot.LinePlot(title=title, x_label="meta-iterations", y_label=metric.replace("_", " "))
    for i, spec in enumerate(specs):
        run_dir, _, label = spec.partition(":")
        x, y = read_curve(run_dir, metric)
        plot.add(x, y, label=label or os.path.basename(run_dir.rstrip("/")),
                 color=COLORS[i % len(COLORS)])
    return png_plot.render([plot])


def sharing_figure(results):
    """One panel per inner learning rate; a line per (method, seed), the method's colour."""
    runs = results["runs"]
    target = results.get("flags", {}).get("target")
    algorithms = sorted({r["algorithm"] for r in runs}, key=lambda a: a != "maml")
    panels = []
    for alpha in sorted({r["inner_lr"] for r in runs}):
        plot = png_plot.LinePlot(title=f"inner lr α = {alpha:g}", x_label="meta-iterations",
                                 y_label="validation accuracy", y_range=(0.2, 1.0))
        if target:
            end = max(max(x for x, _ in r["curve"]) for r in runs if r["curve"])
            plot.add([0, end], [target, target], label=f"target {target:g}", color=png_plot.GREY,
                     width=1, markers=False)
        for i, algorithm in enumerate(algorithms):
            for r in runs:
                if r["inner_lr"] == alpha and r["algorithm"] == algorithm and r["curve"]:
                    x, y = zip(*r["curve"])
                    plot.add(x, y, label=NAMES.get(algorithm, algorithm), color=COLORS[i])
        panels.append(plot)
    return png_plot.render(panels, panel_width=560)


def main(argv):
    del argv
    if not FLAGS.output or bool(FLAGS.runs) == bool(FLAGS.sharing):
        raise SystemExit("give --output and exactly one of --runs or --sharing")
    if FLAGS.sharing:
        with open(FLAGS.sharing) as f:
            pixels = sharing_figure(json.load(f))
    else:
        pixels = runs_figure(FLAGS.runs, FLAGS.metric, FLAGS.title)
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    png_plot.write_png(FLAGS.output, pixels)
    print(f"wrote {FLAGS.output} ({pixels.shape[1]}x{pixels.shape[0]})")


if __name__ == "__main__":
    define_flags()
    app.run(main)
