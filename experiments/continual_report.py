"""The continual-learning results document, generated from the run records.

    python experiments/continual_report.py                 # prints docs/results/continual.md
    python experiments/continual_report.py --write         # rewrites it

(experiments/results_report.py --write also rewrites it, with README's summary.)

Reads every record of experiments/continual_records.py under docs/results/continual/ (one
JSON per run). Means carry 95% Student-t intervals over seeds; differences between two
methods are paired by seed (the same characters, transformations and stream). A test
regenerates the document and compares it with the committed one.
"""

import argparse
import glob
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from wtl_tf.meta_test import mean_ci95  # noqa: E402

RECORDS = os.path.join(ROOT, "docs", "results", "continual")
DOCUMENT = os.path.join(ROOT, "docs", "results", "continual.md")


def load(directory=RECORDS):
    """{group directory name: [record, ...]} sorted by algorithm and seed."""
    groups = {}
    for path in sorted(glob.glob(os.path.join(directory, "*", "*.json"))):
        with open(path) as f:
            record = json.load(f)
        record["file"] = os.path.relpath(path, os.path.dirname(directory))
        groups.setdefault(os.path.basename(os.path.dirname(path)), []).append(record)
    for records in groups.values():
        records.sort(key=lambda r: (r["algorithm"], r.get("arm") or "",
                                    r.get("given", {}).get("mask_lr", 0), r["seed"]))
    return groups


def cell(values, digits=3):
    values = [v for v in values if v is not None and v == v]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    mean, half = mean_ci95(np.asarray(values, np.float64))
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def method(record):
    """The method's name in the tables: the algorithm, and its arm (a variant) if any."""
    arm = record.get("arm")
    return f"{record['algorithm']} ({arm})" if arm else record["algorithm"]


def by_algorithm(records):
    out = {}
    for r in records:
        out.setdefault(method(r), []).append(r)
    return out


def paired(a_runs, b_runs, value):
    a = {r["seed"]: value(r) for r in a_runs}
    b = {r["seed"]: value(r) for r in b_runs}
    seeds = sorted(set(a) & set(b))
    return [a[s] - b[s] for s in seeds], seeds


def machines(records):
    return sorted({f"{r['hardware']}, commit {r['commit'][:12]}" for r in records})


def la_maml_section(title, records):
    runs = by_algorithm(records)
    first = records[0]
    s = first["settings"]
    lines = [f"### {title}", "",
             f"{first['results']['tasks']} tasks, {s['stream_batch']}-example batches, single "
             f"pass, replay {s['replay_samples']} of {s['memories']} memories, "
             f"{s['glances']} glances; seeds "
             f"{', '.join(str(r['seed']) for r in runs[method(first)])}. "
             "Chance is 0.05.", "",
             "| method | RA | LA | BTI (T−1) | final mask sparsity | mask entries changed | "
             "s / 1000 batches |", "|---|---|---|---|---|---|---|"]
    for algorithm, rs in runs.items():
        res = [r["results"] for r in rs]
        sparsity = [x["mask_sparsity"]["overall"] if x["mask_sparsity"] else None for x in res]
        changed = [weighted_changed(x) for x in res]
        speed = np.median([x["seconds_per_1000_steps"] for x in res])
        lines.append(f"| {algorithm} | " + " | ".join([
            cell([x["retained_accuracy"] for x in res]),
            cell([x["learning_accuracy"] for x in res]),
            cell([x["backward_transfer"] for x in res]), cell(sparsity), cell(changed)])
            + f" | {speed:.0f} |")
    lines += ["", "Paired by seed (method − la_maml):", "",
              "| method | ΔRA | ΔLA | ΔBTI (T−1) | seeds |", "|---|---|---|---|---|"]
    for algorithm, rs in runs.items():
        if algorithm == "la_maml" or "la_maml" not in runs:
            continue
        cells = []
        for key in ("retained_accuracy", "learning_accuracy", "backward_transfer"):
            diffs, seeds = paired(rs, runs["la_maml"], lambda r: r["results"][key])
            cells.append(cell(diffs))
        lines.append(f"| {algorithm} | " + " | ".join(cells) + f" | {len(seeds)} |")
    for rs in runs.values():
        if rs[0]["results"].get("mask_trace"):
            lines += ["", *trace_table(rs, "task", "after task")]
    return lines


def weighted_changed(result):
    """The fraction of all mask entries whose open/shut state differs from the start."""
    m = result.get("mask_sparsity")
    if not m:
        return None
    sizes = m.get("entries")
    if not sizes:
        return None  # a record without layer sizes
    return sum(m["changed"][p] * sizes[p] for p in sizes) / sum(sizes.values())


def trace_table(records, key, label):
    """Mean per-layer sparsity along the stream (and the changed fraction at the end)."""
    traces = [r["results"]["mask_trace"] for r in records]
    points = traces[0]
    picks = sorted({0, len(points) // 4, len(points) // 2, len(points) - 1})
    layers = list(points[-1]["per_layer"])
    header = [f"{label} {points[i].get(key, points[i].get('step'))}" for i in picks]
    lines = [f"Mask sparsity per layer along the stream ({method(records[0])}, mean over "
             f"{len(records)} seeds), and the fraction of each layer's entries that changed "
             "from their initial value by the end:", "",
             "| layer | " + " | ".join(header) + " | changed |",
             "|---|" + "---|" * (len(picks) + 1)]
    for layer in layers:
        row = [np.mean([t[i]["per_layer"][layer] for t in traces]) for i in picks]
        changed = np.mean([t[-1]["changed"][layer] for t in traces])
        lines.append(f"| `{layer}` | " + " | ".join(f"{v:.3f}" for v in row)
                     + f" | {changed:.3f} |")
    return lines


def _off_default_mask_rate(records):
    """' (mask_lr X)' when records ran their masks at a rate other than today's default."""
    from wtl_tf.continual import protocol

    defaults = {"sparse_la_maml": protocol.SPARSE_LA_MAML_MASK_LR,
                "sparse_continual_maml": protocol.SPARSE_CONTINUAL_MAML_MASK_LR}
    rates = {r["settings"].get("mask_lr") for r in records}
    default = defaults.get(records[0]["algorithm"])
    if default is None or rates == {default} or None in rates:
        return ""
    return " (mask_lr " + ", ".join(f"{lr:g}" for lr in sorted(rates)) + ")"


def _mask_rates(records):
    rates = sorted({r["settings"]["mask_lr"] for r in records
                    if r["settings"].get("mask_lr") is not None})
    return ("; masks stepped by Adam at " + ", ".join(f"{lr:g}" for lr in rates)) if rates else ""


def osaka_section(title, records):
    runs = by_algorithm(records)
    first = records[0]
    s = first["settings"]
    lines = [f"### {title}", "",
             f"p = {s['stationarity']}, {s['stream_steps']} stream steps of {s['ways']}-way "
             f"{s['shots']}-shot batches, Conv4 {s['conv_channels']} channels, "
             f"{s['inner_steps']} fast steps, meta_lr {s['meta_lr']:g}, γ {s['shift_threshold']}"
             f"; pretraining at most {s['pretrain_iterations']} meta-iterations of "
             f"{s['meta_batch_size']} tasks (Adam {s['outer_lr']:g}), validated every "
             f"{s['pretrain_eval_every']}; seeds "
             f"{', '.join(str(r['seed']) for r in runs[method(first)])}"
             f"{_mask_rates(records)}.", "",
             "| method | online accuracy | pretrain mode | ood1 | ood2 | boundary precision | "
             "boundary recall | pretraining validation | final mask sparsity | "
             "mask entries changed in the stream |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for algorithm, rs in runs.items():
        res = [r["results"] for r in rs]
        online = [x["online_accuracy"] for x in res]
        lines.append(f"| {algorithm} | " + " | ".join([
            cell([o["overall"] for o in online]),
            *(cell([o.get(m) for o in online]) for m in ("pretrain", "ood1", "ood2")),
            cell([x["boundaries"]["precision"] for x in res]),
            cell([x["boundaries"]["recall"] for x in res]),
            cell([max((p["validation_accuracy"] for p in x["pretraining"]), default=None)
                  for x in res]),
            cell([x["mask_sparsity"]["overall"] if x["mask_sparsity"] else None for x in res]),
            cell([weighted_changed(x) for x in res])]) + " |")
    if "continual_maml" in runs and "sparse_continual_maml" in runs:
        diffs, seeds = paired(runs["sparse_continual_maml"], runs["continual_maml"],
                              lambda r: r["results"]["online_accuracy"]["overall"])
        lines += ["", f"sparse_continual_maml − continual_maml, online accuracy paired by "
                  f"seed: {cell(diffs)} ({len(seeds)} seeds)."]
    for rs in runs.values():
        if rs[0]["results"].get("mask_trace"):
            lines += ["", *trace_table(rs, "step", "step")]
    return lines


def _score(result):
    return (result["retained_accuracy"] if "retained_accuracy" in result else
            result["online_accuracy"]["overall"])


def chosen_mask_lr(records):
    """{algorithm: the mask_lr with the best mean validation score over all its runs}."""
    scores = {}
    for r in records:
        scores.setdefault(r["algorithm"], {}).setdefault(r["given"]["mask_lr"], []).append(
            _score(r["results"]))
    return {algorithm: max(by_lr, key=lambda lr: (float(np.mean(by_lr[lr])), -lr))
            for algorithm, by_lr in scores.items()}


def sine_section(title, records):
    first = records[0]
    s = first["settings"]
    res = [r["results"] for r in records]
    k = len(res[0]["interval_mse"]["warpgrad"])
    lines = [f"### {title}", "",
             f"{s['sine_subtasks']} intervals of [-5, 5] learned in sequence, {s['inner_steps']} "
             f"SGD steps of {s['stream_batch']} points each at α {s['inner_lr']:g}; warp layers "
             f"meta-learned for {s['meta_iterations']} meta-iterations of "
             f"{s['meta_batch_size']} tasks; MSE per interval after the whole sequence on "
             f"{res[0]['test_tasks']} held-out tasks, the same tasks and SGD batches for both; "
             f"seeds {', '.join(str(r['seed']) for r in records)}.", "",
             "| method | " + " | ".join(f"interval {i + 1}" for i in range(k)) + " | mean |",
             "|---|" + "---|" * (k + 1)]
    for name in ("warpgrad", "sgd"):
        lines.append(f"| {name} | " + " | ".join(
            cell([x["interval_mse"][name][i] for x in res]) for i in range(k))
            + f" | {cell([x['mean_mse'][name] for x in res])} |")
    diffs = [x["mean_mse"]["warpgrad"] - x["mean_mse"]["sgd"] for x in res]
    lines += ["", f"warpgrad − sgd, mean MSE paired by seed: {cell(diffs)} ({len(diffs)} seeds)."]
    return lines


def validation_section(records):
    lines = ["### Choosing the mask step size (validation streams)", "",
             "Seeds 100 and 101, never the reported seeds 0–4; the default is "
             "the value with the best mean retained accuracy (OSAKA: online accuracy).", "",
             "| learner | stream | mask_lr | runs | RA / online accuracy | final mask sparsity "
             "| mask entries changed |", "|---|---|---|---|---|---|---|"]
    groups = {}
    for r in records:
        groups.setdefault((r["algorithm"], r["stream"], r["given"]["mask_lr"]), []).append(r)
    for (algorithm, stream, lr), rs in sorted(groups.items()):
        res = [r["results"] for r in rs]
        score = [_score(x) for x in res]
        lines.append(f"| {algorithm} | {stream} | {lr:g} | {len(rs)} | {cell(score)} | "
                     f"{cell([x['mask_sparsity']['overall'] for x in res])} | "
                     f"{cell([weighted_changed(x) for x in res])} |")
    chosen = chosen_mask_lr(records)
    lines += ["", "Chosen (the defaults): " + "; ".join(
        f"{algorithm} --mask_lr={lr:g}" for algorithm, lr in sorted(chosen.items())) + "."]
    return lines


SECTIONS = {"validation": ("validation", None),
            "rotated_omniglot": ("la_maml", "Rotated Omniglot"),
            "permuted_omniglot": ("la_maml", "Permuted Omniglot"),
            "osaka_p098": ("osaka", "OSAKA-style Omniglot, p = 0.98"),
            "osaka_p090": ("osaka", "OSAKA-style Omniglot, p = 0.90"),
            "sequential_sine": ("sine", "WarpGrad's sequential sine")}


# The claim's test, fixed before the runs that answer it, so that the answer cannot choose it.
PREREGISTERED_TEST = [
    "### The test of the continual claim (fixed before its runs)", "",
    "Per stream (rotated, permuted and many-permuted Omniglot), seeds 0–9 (validation seeds "
    "100 and up only for choices), every difference paired by seed with a 95% Student-t "
    "interval:", "",
    "1. *Does a sparse arm forget less at equal learning accuracy?* La-MAML at "
    "α0 ∈ {0.05, 0.1, 0.15} traces its RA-against-LA curve (straight lines between "
    "neighbouring α0 in LA). A sparse arm lies above the curve when its RA minus the curve's "
    "RA at the arm's own LA is positive with an interval that excludes zero; an arm whose LA "
    "lies outside the curve's range is reported as outside, never extrapolated.",
    "2. *Does learned placement beat random placement at equal sparsity?* Every learned-mask "
    "run has a control: a frozen random mask whose per-layer sparsity follows the learned "
    "run's trace. Learned placement wins when learned − random is positive on both BTI and "
    "RA with intervals that exclude zero, loses when either interval lies below zero, and is "
    "undecided otherwise.", "",
    "Arms: La-MAML at the three α0; sparse-La-MAML with mask rates {0, 0.3, 1, 3, 10}, "
    "stepped by SGD and by Adam; the mask on top of La-MAML's learned rates "
    "(binary_mask + learned_rates); a mask meta-pretrained on held-out rotated streams, "
    "frozen or learned on. OSAKA (p = 0.98 and 0.90, 10,000-step streams, pretraining "
    "stopped early on validation): sparse-C-MAML − C-MAML in online accuracy over the first "
    "100 steps (the start) and over the rest (adaptation), per-weight and per-tensor masks. "
    "The answer is reported per stream, with a figure of RA against LA for every arm, "
    "whatever it is; a section below without those arms has not been run yet.", ""]


CLAIM = os.path.join(RECORDS, "claim")
CLAIM_STREAMS = {"rotated_omniglot": "Rotated Omniglot", "permuted_omniglot": "Permuted Omniglot",
                 "many_permuted_omniglot": "Many-permuted Omniglot"}
CLAIM_FIGURES = os.path.join(ROOT, "docs", "plots", "continual_claim")


def load_claim(directory=CLAIM):
    """{stream: {arm: [record, ...] by seed}} of the claim's runs (arm: `alpha0_X` for
    La-MAML, `mask_lr_X` for sparse-La-MAML)."""
    streams = {}
    for path in sorted(glob.glob(os.path.join(directory, "*", "*.json"))):
        with open(path) as f:
            record = json.load(f)
        arms = streams.setdefault(record["stream"], {})
        arms.setdefault(f"{record['algorithm']} ({record['arm']})", []).append(record)
    for arms in streams.values():
        for records in arms.values():
            records.sort(key=lambda r: r["seed"])
    return streams


CURVE_PREFIX = "la_maml (alpha0_"  # La-MAML at one α0: a point of the trade-off curve


def on_curve(name):
    return name.startswith(CURVE_PREFIX)


def _arm_order(name):
    algorithm, arm = name[:-1].split(" (")
    value = arm.split("_")[-1]
    numeric = value.replace(".", "", 1).isdigit()
    return not on_curve(name), algorithm, not numeric, float(value) if numeric else 0.0, arm


def curve_at(points, la):
    """RA on the straight lines through La-MAML's (LA, RA) points at `la`; None outside."""
    points = sorted(points)
    for (la0, ra0), (la1, ra1) in zip(points, points[1:]):
        if la0 <= la <= la1:
            return ra0 if la1 == la0 else ra0 + (ra1 - ra0) * (la - la0) / (la1 - la0)
    return None


def above_curve(arm_runs, curve_runs):
    """Per seed, the arm's RA minus the RA of that seed's La-MAML curve at the arm's LA.
    Seeds whose LA lies outside the curve's range are not extrapolated; they are counted by
    where they lie: `dominates` (higher LA and higher RA than every α0 point of the seed),
    `dominated` (lower LA and lower RA than every point), `neither`."""
    by_seed = {}
    for runs in curve_runs:
        for r in runs:
            by_seed.setdefault(r["seed"], []).append(
                (r["results"]["learning_accuracy"], r["results"]["retained_accuracy"]))
    excess, outside = [], {"dominates": 0, "dominated": 0, "neither": 0}
    for r in arm_runs:
        points = by_seed.get(r["seed"])
        if not points or len(points) < len(curve_runs):
            continue
        la, ra = r["results"]["learning_accuracy"], r["results"]["retained_accuracy"]
        at = curve_at(points, la)
        if at is not None:
            excess.append(ra - at)
        elif la > max(p[0] for p in points) and ra > max(p[1] for p in points):
            outside["dominates"] += 1
        elif la < min(p[0] for p in points) and ra < min(p[1] for p in points):
            outside["dominated"] += 1
        else:
            outside["neither"] += 1
    return excess, outside


def verdict(values):
    if len(values) < 2:
        return "too few seeds inside the curve"
    mean, half = mean_ci95(np.asarray(values, np.float64))
    return ("above the curve" if mean - half > 0 else "below the curve" if mean + half < 0
            else "on the curve (interval includes 0)")


CONTROL_PREFIX = "random_placement_"
DENSE_FIXED_RATE = "sparse_la_maml (dense_fixed_rate)"


def paired_by_seed(arm_runs, other_runs, key):
    """Per seed present in both, the arm's result `key` minus the other's."""
    return paired(arm_runs, other_runs, lambda r: r["results"][key])[0]


def mean_sparsity(runs):
    """Per run, the overall shut fraction averaged over the stream's task ends."""
    return [float(np.mean([t["overall"] for t in r["results"]["mask_trace"]])) for r in runs
            if r["results"].get("mask_trace")]


def placement_answer(bti, ra):
    if len(bti) < 2:
        return "too few seeds"
    intervals = [mean_ci95(np.asarray(v, np.float64)) for v in (bti, ra)]
    if all(m - h > 0 for m, h in intervals):
        return "learned placement wins"
    if any(m + h < 0 for m, h in intervals):
        return "learned placement loses"
    return "undecided"


def placement_lines(arms):
    """Question 2: each learned mask against random placement at its per-layer sparsity."""
    rows = []
    for name in sorted(arms, key=_arm_order):
        algorithm, arm = name[:-1].split(" (")
        control = f"{algorithm} ({CONTROL_PREFIX}{arm})"
        if arm.startswith(CONTROL_PREFIX) or control not in arms:
            continue
        learned, random = arms[name], arms[control]
        bti = paired_by_seed(learned, random, "backward_transfer")
        ra = paired_by_seed(learned, random, "retained_accuracy")
        rows.append(f"| {name} | {len(bti)} | {cell(mean_sparsity(learned))} | "
                    f"{cell(mean_sparsity(random))} | {cell(bti)} | {cell(ra)} | "
                    f"{cell(paired_by_seed(learned, random, 'learning_accuracy'))} | "
                    f"{placement_answer(bti, ra)} |")
    if not rows:
        return []
    return ["", "Question 2, learned against random placement at equal sparsity (paired by "
            "seed; the control `random_placement_<arm>` has the learned run's initial mask "
            "and, within each task, its per-layer sparsity midway through that task, frozen):",
            "", "| learned arm | seeds | mean sparsity, learned | mean sparsity, random | "
            "BTI learned − random | RA learned − random | LA learned − random | answer |",
            "|---|---|---|---|---|---|---|---|", *rows]


def fixed_rate_lines(arms):
    """Each sparse arm against the same fixed rate with no mask (paired by seed)."""
    if DENSE_FIXED_RATE not in arms:
        return []
    dense, rows = arms[DENSE_FIXED_RATE], []
    for name in sorted(arms, key=_arm_order):
        if name.startswith("la_maml") or name == DENSE_FIXED_RATE:
            continue
        rows.append(f"| {name} | {len(paired_by_seed(arms[name], dense, 'retained_accuracy'))} | " +
                    " | ".join(cell(paired_by_seed(arms[name], dense, key)) for key in (
                        "retained_accuracy", "learning_accuracy", "backward_transfer")) + " |")
    return ["", "A mask against none at the same fixed rate (each arm − `dense_fixed_rate`, "
            "paired by seed):", "", "| arm | seeds | RA | LA | BTI |", "|---|---|---|---|---|",
            *rows]


PRETRAINED_PREFIX = "pretrained"
PRETRAINED_DENSE = "la_maml (pretrained)"


def pretrained_lines(arms):
    """The meta-pretrained masks against La-MAML meta-pretrained on the same held-out streams
    (paired by seed)."""
    if PRETRAINED_DENSE not in arms:
        return []
    dense, rows = arms[PRETRAINED_DENSE], []
    held_out = sorted({s for r in dense for s in r.get("pretrained_on", [])})
    for name in sorted(arms, key=_arm_order):
        arm = name[:-1].split(" (")[1]
        if name == PRETRAINED_DENSE or not arm.startswith(PRETRAINED_PREFIX):
            continue
        rows.append(f"| {name} | {len(paired_by_seed(arms[name], dense, 'retained_accuracy'))} | " +
                    " | ".join(cell(paired_by_seed(arms[name], dense, key)) for key in (
                        "retained_accuracy", "learning_accuracy", "backward_transfer")) + " |")
    return ["", "The meta-pretrained start: θ and the mask (sparse arms) or the per-weight "
            "rates (`la_maml (pretrained)`) learned on held-out streams (seeds "
            f"{', '.join(str(s) for s in held_out)}, in turn), then each test stream from "
            "there (`--start_from`); each arm − `la_maml (pretrained)`, paired by seed:", "",
            "| arm | seeds | RA | LA | BTI |", "|---|---|---|---|---|", *rows]


def claim_answer(excess, outside):
    total = len(excess) + sum(outside.values())
    if outside["dominates"] == total:
        return f"dominates the curve on all {total} seeds"
    if outside["dominated"] == total:
        return f"dominated by the curve on all {total} seeds"
    if len(excess) < 2:
        return (f"undecided: {len(excess)} seeds inside the curve, {outside['dominates']} of "
                f"{total} dominate it")
    answer = verdict(excess)
    if len(excess) < total:
        answer += f" on the {len(excess)} seeds inside; undecided on all {total}"
    return answer


def claim_section(stream, arms):
    title = CLAIM_STREAMS.get(stream, stream)
    names = sorted(arms, key=_arm_order)
    curve = [arms[n] for n in names if on_curve(n)]
    lines = [f"#### {title}", "",
             "| arm | seeds | RA | LA | BTI (T−1) | final mask sparsity | mask entries changed "
             "|", "|---|---|---|---|---|---|---|"]
    for name in names:
        res = [r["results"] for r in arms[name]]
        lines.append(f"| {name} | {len(res)} | " + " | ".join([
            cell([x["retained_accuracy"] for x in res]),
            cell([x["learning_accuracy"] for x in res]),
            cell([x["backward_transfer"] for x in res]),
            cell([x["mask_sparsity"]["overall"] if x["mask_sparsity"] else None for x in res]),
            cell([weighted_changed(x) for x in res])]) + " |")
    lines += ["", "Question 1, RA above La-MAML's α0 curve at the arm's own LA (paired by seed). "
              "A seed whose LA lies outside the curve's range is not extrapolated: it is "
              "counted as dominating (higher LA and RA than all three α0 runs of its seed), "
              "dominated (lower in both) or neither.", "",
              "| arm | seeds inside the curve's LA range | RA − curve | outside: dominates / "
              "dominated / neither | answer |", "|---|---|---|---|---|"]
    for name in names:
        if on_curve(name):
            continue
        excess, outside = above_curve(arms[name], curve)
        lines.append(f"| {name} | {len(excess)} | {cell(excess)} | "
                     f"{outside['dominates']} / {outside['dominated']} / {outside['neither']} | "
                     f"{claim_answer(excess, outside)} |")
    tested = sum(not on_curve(name) for name in names)
    lines += ["", f"{tested} arms against one curve: an interval that only just excludes 0 in "
              "one of them is weak evidence."]
    lines += placement_lines(arms) + fixed_rate_lines(arms) + pretrained_lines(arms)
    figure = f"../plots/continual_claim/{stream}.png"
    lines += ["", f"![RA against LA for every arm, mean and 95% intervals]({figure})", ""]
    return lines


def sparse_alpha0(streams):
    """The sparse arms' fixed α0, per stream: "0.15 (rotated Omniglot), 0.1 (...)"."""
    parts = []
    for stream, title in CLAIM_STREAMS.items():
        values = {r["settings"]["inner_lr"] for name, runs in streams.get(stream, {}).items()
                  if not name.startswith("la_maml") for r in runs}
        if values:
            parts.append(" / ".join(f"{v:g}" for v in sorted(values)) + f" ({title})")
    return ", ".join(parts)


# What the test asks for, and how its records' arm names begin.
CLAIM_PARTS = (("question 2 (learned against random placement at equal sparsity)",
                CONTROL_PREFIX), ("the Adam mask rates", "adam_"),
               ("the mask on La-MAML's learned rates", "chain_"),
               ("the meta-pretrained mask", "pretrained_"), ("OSAKA", "osaka_"))


def open_parts(streams):
    arms = {name[:-1].split(" (")[1] for a in streams.values() for name in a}
    missing = [part for part, prefix in CLAIM_PARTS
               if not any(arm.startswith(prefix) for arm in arms)]
    if not missing:
        return ""
    text = (", ".join(missing[:-1]) + (" and " if len(missing) > 1 else "") + missing[-1] +
            (" have" if len(missing) > 1 else " has") + " no records yet: open.")
    return text[0].upper() + text[1:]


def claim_sections(streams):
    if not streams:
        return []
    lines = ["### The test of the continual claim: the answers so far", "",
             "Records: `docs/results/continual/claim/<stream>/`; each arm at the library's "
             "defaults for its stream but the one value its name gives (La-MAML's α0 "
             "`--inner_lr`, its per-weight rates learned from there; sparse-La-MAML's SGD mask "
             f"rate `--mask_lr`, its rate a fixed α0 = {sparse_alpha0(streams)} times the "
             "mask; La-MAML's `chain_mask_lr_X` arms keep its learned per-weight rates and "
             "put a binary mask on top, `--update_rules=binary_mask,learned_rates` at mask "
             "rate X). So the curve and the sparse arms differ in two things, learned rates "
             "against a fixed rate and no mask against a mask; the arm `dense_fixed_rate` "
             "(sparse-La-MAML with every mask entry open and frozen) separates them where it "
             "has records. " + open_parts(streams), ""]
    for stream in CLAIM_STREAMS:
        if stream in streams:
            lines += claim_section(stream, streams[stream])
    return lines


def claim_figures(streams, output_dir=CLAIM_FIGURES):
    """RA against LA, one point per arm (mean, 95% intervals both ways), per stream."""
    from wtl_tf import plots

    written = []
    for stream, arms in streams.items():
        points = {}
        for name in sorted(arms, key=_arm_order):
            res = [r["results"] for r in arms[name]]
            points[name] = ([x["learning_accuracy"] for x in res],
                            [x["retained_accuracy"] for x in res])
        written.append(plots.ra_against_la(points, CLAIM_STREAMS.get(stream, stream),
                                           os.path.join(output_dir, f"{stream}.png"),
                                           curve=[n for n in points if on_curve(n)]))
    return written


def document(groups, claim=None):
    lines = ["# Continual learning: results", "",
             "Generated by `python experiments/continual_report.py --write` from the run "
             "records in `docs/results/continual/` (one JSON per run: settings, seed, "
             "commit, machine, results); `tests/test_results_documents.py` checks that this "
             "file is what the records give. Mean ± 95% Student-t interval over seeds; "
             "a seed draws the characters, the transformations, the initialisation and the "
             "replay draws. RA: mean accuracy on every task after the last; LA: mean accuracy "
             "on each task right after learning it; BTI: mean change of a task's accuracy from "
             "then to the end (T−1 normalisation).", ""]
    lines += PREREGISTERED_TEST
    lines += claim_sections(load_claim() if claim is None else claim)
    all_records = [r for rs in groups.values() for r in rs]
    for name, (kind, title) in SECTIONS.items():
        records = groups.get(name)
        if not records:
            continue
        if kind == "validation":
            lines += validation_section(records)
        elif kind == "la_maml":
            lines += la_maml_section(title, records)
        elif kind == "sine":
            lines += sine_section(title, records)
        else:
            lines += osaka_section(title, records)
        lines.append("")
    lines += ["Machines and commits of these records: "
              + "; ".join(machines(all_records)) + ".", ""]
    return "\n".join(lines)


CLAIM_SUMMARY_ARM = "sparse_la_maml (mask_lr_10)"  # the learned mask: the claim's real test


def outside_note(outside):
    total = sum(outside.values())
    if not total:
        return ""
    known = [f"{outside[k]} {k}" for k in ("dominates", "dominated") if outside[k]]
    return f" ({total} outside" + (": " + ", ".join(known) if known else "") + ")"


def claim_rows(streams):
    """README's rows of the claim: the learned-mask arm against La-MAML's α0 curve."""
    rows = []
    for stream, title in CLAIM_STREAMS.items():
        arms = streams.get(stream, {})
        if CLAIM_SUMMARY_ARM not in arms:
            continue
        curve = [runs for name, runs in sorted(arms.items()) if on_curve(name)]
        excess, outside = above_curve(arms[CLAIM_SUMMARY_ARM], curve)
        rows.append({"group": f"claim/{stream}", "benchmark": f"{title} (RA at equal LA)",
                     "method": CLAIM_SUMMARY_ARM,
                     "score": cell([r["results"]["retained_accuracy"]
                                    for r in arms[CLAIM_SUMMARY_ARM]]),
                     "against": "la_maml's α0 curve", "against_score": "(0.05–0.15)",
                     "difference": cell(excess),
                     "seeds": f"{len(excess)}" + outside_note(outside)})
    return rows


def summary_rows(groups, claim=None):
    """README's rows (experiments/results_report.py): each sparse learner (and its arms)
    against its dense one, and WarpGrad against SGD, paired by seed; then the claim's."""
    rows = claim_rows(load_claim() if claim is None else claim)
    pairs = {"la_maml": ("sparse_la_maml", "la_maml", "RA", "retained_accuracy"),
             "osaka": ("sparse_continual_maml", "continual_maml", "online accuracy", None)}
    for name, (kind, title) in SECTIONS.items():
        records = groups.get(name)
        if not records or kind == "validation":
            continue
        if kind == "sine":
            res = [r["results"]["mean_mse"] for r in records]
            rows.append({"group": name, "benchmark": f"{title} (mean MSE)",
                         "method": "warpgrad", "score": cell([x["warpgrad"] for x in res]),
                         "against": "sgd", "against_score": cell([x["sgd"] for x in res]),
                         "difference": cell([x["warpgrad"] - x["sgd"] for x in res]),
                         "seeds": len(res)})
            continue
        sparse, dense, label, key = pairs[kind]
        runs = by_algorithm(records)
        if dense not in runs:
            continue

        def value(r):
            return (r["results"][key] if key else
                    r["results"]["online_accuracy"]["overall"])

        for variant, rs in runs.items():
            if not variant.startswith(sparse):
                continue
            diffs, seeds = paired(rs, runs[dense], value)
            rows.append({"group": name, "benchmark": f"{title} ({label})",
                         "method": variant + (_off_default_mask_rate(rs) if variant == sparse
                                              else ""),  # (a named arm says its rate)
                         "score": cell([value(r) for r in rs]), "against": dense,
                         "against_score": cell([value(r) for r in runs[dense]]),
                         "difference": cell(diffs), "seeds": len(seeds)})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default=RECORDS)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    groups = load(args.records)
    text = document(groups, load_claim())
    if not args.write:
        print(text, end="")
        return
    with open(DOCUMENT, "w") as f:
        f.write(text)
    for path in claim_figures(load_claim()):
        print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
