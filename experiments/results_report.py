"""docs/results.md and README's results summary, generated from the committed records.

    python experiments/results_report.py            # prints docs/results.md
    python experiments/results_report.py --write    # rewrites it, docs/results/continual.md,
                                                    # README's summary and docs/plots/

Records: `docs/results/fewshot/` (experiments/fewshot_records.py: one JSON per train.py run
with its flags, settings, seed, commit, machine, learning curve and every test episode's
score), `docs/results/gradient_sharing.json` (experiments/gradient_sharing.py),
`docs/results/warpgrad/` (experiments/warpgrad_omniglot.py) and `docs/results/continual/`
(experiments/continual_records.py, tabulated by continual_report.py). Means carry 95%
Student-t intervals; differences between methods are paired (the same seed draws the same
episodes for both). tests/test_results_documents.py regenerates everything and compares.
"""

import argparse
import glob
import json
import os
import sys

import numpy as np

EXPERIMENTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(EXPERIMENTS)
sys.path.insert(0, ROOT)
sys.path.insert(0, EXPERIMENTS)

import continual_report  # noqa: E402
import sharing_tables  # noqa: E402
import warpgrad_report  # noqa: E402
from records import replace_between  # noqa: E402
from wtl_tf.meta_test import mean_ci95  # noqa: E402

RESULTS = os.path.join(ROOT, "docs", "results")
FEWSHOT = os.path.join(RESULTS, "fewshot")
DOCUMENT = os.path.join(ROOT, "docs", "results.md")
PLOTS = os.path.join(ROOT, "docs", "plots")
SUMMARY_MARKERS = ("<!-- results summary: experiments/results_report.py --write -->",
                   "<!-- end of results summary -->")
NAMES = {"maml": "MAML", "sparse_maml": "sparse-MAML"}


def load_fewshot(directory=FEWSHOT):
    """{record name: [record, ...] by seed}."""
    groups = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path) as f:
            record = json.load(f)
        record["file"] = os.path.relpath(path, os.path.dirname(DOCUMENT))
        groups.setdefault(record["name"], []).append(record)
    for records in groups.values():
        records.sort(key=lambda r: r["seed"])
    return groups


def _interval(values, sign="", unit=""):
    """'mean ± half-width' of `values` as percentages (one value: no interval)."""
    values = 100 * np.asarray(values, np.float64)
    if values.size == 1:
        return f"{values[0]:{sign}.1f}{unit}"
    mean, half = mean_ci95(values)
    return f"{mean:{sign}.1f} ± {half:.1f}{unit}"


def percent(values):
    return _interval(values, unit="%")


def points(values):
    """A difference in percentage points, signed."""
    return _interval(values, sign="+")


def machines(records):
    return sorted({f"{r['hardware']}, commit {r['commit'][:12]}" for r in records})


def _given(record):
    return " ".join(f"--{k}={v}" for k, v in record["given"].items())


def _seeds(records):
    return ",".join(str(r["seed"]) for r in records)


def command(name, records):
    first = records[0]
    config = f" --config={first['config']}" if first.get("config") else ""
    sets = "".join(f" --set={k}={v}" for k, v in first["given"].items())
    within = (" --within_alphabet" if "test_within_alphabet_per_task" in first["results"]
              else "")
    return (f"python experiments/fewshot_records.py --name={name}{config} "
            f"--seeds={_seeds(records)}{sets}{within} --out=docs/results/fewshot")


def test_scores(record, key="test_per_task"):
    return np.asarray(record["results"][key]["accuracy"])


# ---------------------------------------------------------------------------------------------
# sections


def sinusoid_section(records):
    r = records[0]
    res, s = r["results"], r["settings"]
    layers = res["sparsity"]["per_layer"]
    lines = [
        "## Sinusoid regression (the default command)", "",
        "```bash", "python train.py", command("sinusoid_sparse_maml", records), "```", "",
        f"sparse-MAML on Finn et al.'s sinusoids: {s['shots']} shots, {s['inner_steps']} inner "
        f"step of α = {s['inner_lr']}, meta-batch {s['meta_batch_size']}, "
        f"{res['meta_iterations']} meta-iterations, {s['order']} order; meta-test on "
        f"{res['test_tasks']} held-out tasks (mean ± 95% interval over tasks).", "",
        "| method | MSE before adaptation | MSE after adaptation | mask sparsity "
        + " / ".join(layers) + " (overall) | record |", "|---|---|---|---|---|",
        f"| sparse-MAML | {res['test']['pre_loss']['mean']:.2f} ± "
        f"{res['test']['pre_loss']['ci95']:.2f} | **{res['test']['loss']['mean']:.2f} ± "
        f"{res['test']['loss']['ci95']:.2f}** | "
        + " / ".join(f"{v:.2f}" for v in layers.values())
        + f" ({res['sparsity']['overall']:.2f}) | [{os.path.basename(r['file'])}]({r['file']}) |",
        "",
        "Sparsity emerges and differs by layer: it is highest near the output, where one "
        "small step must fit the task. Given `--seed`, a rerun on the same machine "
        "(the record's) repeats these numbers; another CPU (a different instruction set "
        "picks different oneDNN kernels and summation orders) moves them within the "
        "intervals, so the record names its machine.", ""]
    return lines


def _mean_curve(records, column):
    """{iteration: mean over the records that have it} of a learning-curve column."""
    by_iteration = {}
    for r in records:
        for row in r["results"]["learning_curve"]:
            if column in row:
                by_iteration.setdefault(int(row["iteration"]), []).append(row[column])
    return {k: float(np.mean(v)) for k, v in sorted(by_iteration.items())
            if len(v) == len(records)}


def pair_names(fewshot, ways):
    """(MAML, sparse-MAML) record names of the Omniglot `ways`-way comparison: for 20-way, the
    500-meta-iteration runs once both methods have them, else the short runs."""
    longer = (f"omniglot_{ways}way_maml_500", f"omniglot_{ways}way_sparse_maml_500")
    if ways == "20" and all(name in fewshot for name in longer):
        return longer
    return f"omniglot_{ways}way_maml", f"omniglot_{ways}way_sparse_maml"


def fewshot_comparison(title, dense_name, sparse_name, groups, intro):
    dense, sparse = groups.get(dense_name), groups.get(sparse_name)
    if not dense or not sparse:
        return []
    s = dense[0]["settings"]
    within = "test_within_alphabet_per_task" in dense[0]["results"]
    lines = [f"## {title}", "", "```bash", command(dense_name, dense),
             command(sparse_name, sparse), "python experiments/results_report.py --write",
             "```", "", intro.format(**s, iterations=dense[0]["results"]["meta_iterations"]),
             ""]
    header = ("| method | seeds | test accuracy (mean over seeds ± 95%) | "
              + ("test, classes from one alphabet | " if within else "")
              + "best validation | final mask sparsity | records |")
    lines += [header, "|---" * (header.count("|") - 1) + "|"]
    for name, records in ((dense_name, dense), (sparse_name, sparse)):
        algorithm = records[0]["settings"]["algorithm"]
        tests = [test_scores(r).mean() for r in records]
        withins = ([test_scores(r, "test_within_alphabet_per_task").mean() for r in records]
                   if within else None)
        best = [r["results"]["best_validation"]["val_accuracy"] for r in records]
        sparsity = [r["results"]["sparsity"]["overall"] for r in records
                    if r["results"]["sparsity"]]
        links = ", ".join(f"[s{r['seed']}]({r['file']})" for r in records)
        lines.append(f"| {NAMES.get(algorithm, algorithm)} | {len(records)} | "
                     f"**{percent(tests)}** | " + (f"{percent(withins)} | " if within else "")
                     + f"{percent(best)} | "
                     + (f"{np.mean(sparsity):.2f}" if sparsity else "—") + f" | {links} |")
    lines.append("")
    # paired by seed: the same seed draws the same test episodes for both methods
    seeds = sorted({r["seed"] for r in dense} & {r["seed"] for r in sparse})
    d = {r["seed"]: r for r in dense}
    sp = {r["seed"]: r for r in sparse}
    per_seed = [test_scores(sp[k]) - test_scores(d[k]) for k in seeds]
    lines += ["sparse-MAML minus MAML on the same test episodes: "
              + "; ".join(f"seed {k}: {points(diff)} points over {diff.size} episodes"
                          for k, diff in zip(seeds, per_seed))
              + (f"; over seeds: {points([x.mean() for x in per_seed])} points"
                 if len(seeds) > 1 else "")
              + (" (one alphabet: "
                 + points([(test_scores(sp[k], 'test_within_alphabet_per_task')
                            - test_scores(d[k], 'test_within_alphabet_per_task')).mean()
                           for k in seeds]) + " points)" if within and len(seeds) > 1 else "")
              + ".", ""]
    ahead = sum(x.mean() > 0 for x in per_seed)
    lines += [f"What the records say: sparse-MAML is ahead of MAML on {ahead} of {len(seeds)} "
              "seeds on the same test episodes" + (
                  ", each seed's difference outside its interval over episodes"
                  if all(abs(x.mean()) > mean_ci95(x)[1] for x in per_seed) else "")
              + (("; the 95% interval over seeds excludes zero. "
                  if abs(np.mean([x.mean() for x in per_seed]))
                  > mean_ci95([x.mean() for x in per_seed])[1]
                  else "; over this few seeds the interval still includes zero. ")
                 if len(seeds) > 1 else ". ")
              + _sparsity_reading(sparse), ""]
    dense_curve = _mean_curve(dense, "val_accuracy")
    sparse_curve = _mean_curve(sparse, "val_accuracy")
    its = [k for k in dense_curve if k in sparse_curve]
    lines += ["Validation accuracy along training (mean over seeds):", "",
              "| method | " + " | ".join(f"{k} it" for k in its) + " |",
              "|---" * (len(its) + 1) + "|"]
    for label, curve in (("MAML", dense_curve), ("sparse-MAML", sparse_curve)):
        lines.append(f"| {label} | " + " | ".join(f"{100 * curve[k]:.1f}%" for k in its) + " |")
    layers = [c.split("/", 1)[1] for c in sparse[0]["results"]["learning_curve"][0]
              if c.startswith("sparsity/")]
    if layers:
        lines += ["", "sparse-MAML's mask sparsity (fraction of parameters whose inner update "
                  "is exactly zero; mean over seeds):", "",
                  "| iteration | " + " | ".join(layers) + " |",
                  "|---" * (len(layers) + 1) + "|"]
        curves = {layer: _mean_curve(sparse, f"sparsity/{layer}") for layer in layers}
        for k in curves[layers[0]]:
            lines.append(f"| {k} | " + " | ".join(f"{curves[layer][k]:.2f}" for layer in layers)
                         + " |")
    figures = f"plots/{dense_name.split('_maml')[0]}"  # written by --write (write_plots)
    lines += ["", f"![validation accuracy, mean and 95% band across seeds]({figures}/"
              "learning_curves.png)", f"![sparse-MAML's mask sparsity by layer]({figures}/"
              "sparsity.png)", ""]
    return lines


def _sparsity_reading(records):
    """One sentence on how the masks moved (mean over seeds), from the learning curves."""
    layers = [c.split("/", 1)[1] for c in records[0]["results"]["learning_curve"][0]
              if c.startswith("sparsity/") and c != "sparsity/overall"]
    if not layers:
        return ""
    overall = _mean_curve(records, "sparsity/overall")
    first, last = min(overall), max(overall)
    final = {layer: _mean_curve(records, f"sparsity/{layer}")[last] for layer in layers}
    most, least = max(final, key=final.get), min(final, key=final.get)
    return (f"The masks move away from their half-open start: overall sparsity "
            f"{overall[first]:.2f} at iteration {first}, {overall[last]:.2f} at {last}, most in "
            f"{most} ({final[most]:.2f}) and least in {least} ({final[least]:.2f}).")


FIVE_WAY_INTRO = (
    "5-way 1-shot on the shared small Omniglot archives (242 characters, 8 alphabets) through "
    "the same loader as the full archives, split by alphabet: meta-train on 6 alphabets with "
    "90/180/270° rotations, pick the checkpoint on 5 held-out characters per training "
    "alphabet, meta-test on {test_tasks} episodes from Korean and Tagalog (characters never "
    "seen in training). Conv4 ({conv_channels} channels, BatchNorm with batch statistics), "
    "α = {inner_lr}, {inner_steps} inner step in training and {inner_steps_eval} at test, "
    "meta-batch {meta_batch_size}, {order} order, Adam for θ, {iterations} meta-iterations "
    "(validation every {eval_every}); sparse-MAML's masks: kaiming initialisation, Adam "
    "7.5·10⁻³ (the reference's Conv4 setting). Before adaptation every learner scores chance: "
    "each episode's labels are a random permutation.")

TWENTY_WAY_INTRO = (
    "20-way 1-shot at the reference's inner loop: α = {inner_lr}, {inner_steps} inner steps in "
    "training and {inner_steps_eval} at test, meta-batch {meta_batch_size}, {order} order, Adam "
    "for θ, one query per class, {test_tasks} test episodes; the same alphabet split as above. "
    "Not at the reference: {iterations} meta-iterations instead of 60,000 — the start of "
    "training, not a test of the claim at convergence. The one-alphabet column draws all 20 "
    "classes of an episode from one held-out alphabet (the harder setting of the original "
    "one-shot benchmark; only Korean has 20 characters, so those episodes are all Korean).")


def sharing_section(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        sweep = json.load(f)
    runs, protocol = sweep["runs"], sweep["flags"]
    hardware = sorted({r.get("hardware", "unknown") for r in runs})
    return [
        "## Gradient sharing against MAML: meta-iterations to a target", "",
        "```bash",
        "python experiments/gradient_sharing.py --inner_lrs=0.1,0.4,1.0 --seeds=0,1,2 "
        f"--target={protocol['target']} --max_iterations={protocol['max_iterations']} "
        "--output=runs/gradient_sharing.json", "```", "",
        "The paper's measure on the shared Omniglot (the alphabet split above): Conv4, 5-way "
        "1-shot, one inner step, second order, meta-batch "
        f"{protocol['meta_batch_size']}, Adam 10⁻³ for θ and for the sharing weights (which "
        "start at 0, so both methods start identical); validation accuracy on "
        f"{protocol['validation_tasks']} fixed episodes every {protocol['eval_every']} "
        f"meta-iterations until it reaches {protocol['target']:.0%}, at most "
        f"{protocol['max_iterations']}; a meta-test on {protocol['test_tasks']} Korean/Tagalog "
        "episodes where each run stopped (so compare iterations, not those accuracies). "
        "Record: [gradient_sharing.json](results/gradient_sharing.json) (every run's "
        "validation curve; machines: " + "; ".join(hardware) + "; the sweep predates "
        "commit-stamped records). Wall seconds include time shared with other jobs.", "",
        sharing_tables.pairs_table(runs), "", sharing_tables.table(runs), "",
        "No pair reaches the target faster with sharing at α ≤ 0.4, and at α = 1.0 no run of "
        "either method reaches it or diverges: the paper's speed-up is not reproduced at this "
        "scale; the rule is our reading of a paper without equations "
        "([algorithms.md](algorithms.md)).", ""]


def warpgrad_section():
    lines = ["## WarpGrad on Omniglot alphabets: Warp-Leap against Leap and fine-tuning", ""]
    budgets = (("warpgrad20_s*.json", "20 CPU-minutes per method and seed"),
               ("warpgrad_s*.json", "4 CPU-minutes per method and seed"))
    for pattern, title in budgets:
        paths = sorted(glob.glob(os.path.join(RESULTS, "warpgrad", pattern)))
        if not paths:
            continue
        seeds = warpgrad_report.load(paths)
        hardware = set()
        for path in paths:
            with open(path) as f:
                payload = json.load(f)
            hardware |= {r["hardware"] for r in payload["runs"] if "hardware" in r}
            hardware |= {payload["flags"]["hardware"]} if "hardware" in payload["flags"] else set()
        flags = payload["flags"]
        links = ", ".join(f"[{os.path.basename(p)}](results/warpgrad/{os.path.basename(p)})"
                          for p in paths)
        lines += [f"### {title}", "", "```bash",
                  f"python experiments/warpgrad_omniglot.py --budget_minutes="
                  f"{flags['budget_minutes']:g} --budget_clock={flags['budget_clock']} "
                  f"--channels={flags['channels']} --meta_batch_size={flags['meta_batch_size']} "
                  f"--inner_steps={flags['inner_steps']} --inner_steps_eval="
                  f"{flags['inner_steps_eval']} --task_batch={flags['task_batch']} "
                  f"--test_tasks={flags['test_tasks']} --augment={flags['augment']} --seed=S",
                  "python experiments/warpgrad_report.py runs/warpgrad*_s*.json", "```", "",
                  warpgrad_report.table(seeds), "", warpgrad_report.per_seed_differences(seeds),
                  "", f"Records: {links} (every test task's accuracy; 20-way tasks from "
                  "held-out alphabets, the same for every method of a seed, so differences "
                  "are paired). Machines: " + ("; ".join(sorted(hardware)) or "not recorded")
                  + ".", ""]
    lines += [
        "Protocol: the official warp initialisation and Leap's sum over stored segments, "
        "20-way tasks (one alphabet × rotation), α = β = 0.1; scaled to this CPU: 32 channels "
        "(reference 64), 5 tasks per meta-batch (20), 20 inner steps (100), batches of 32 "
        "(128), no augmentation; every method gets the same CPU seconds "
        "(`--budget_clock=cpu`), so Warp-Leap does fewer meta-iterations than Leap. "
        "Fine-tuning pre-trains on all training classes jointly with no early stopping: with "
        "the larger budget it overfits its pre-training classes, so the difference against it "
        "measures that, not warping.", ""]
    return lines


PRECISION = os.path.join(FEWSHOT, "precision")
PRECISION_TAGS = ("fp32", "bf16")  # record names end in _fp32 / _bf16: --mixed_precision
PRECISION_PAIRS = (("sinusoid_sparse_maml", "Sinusoid, sparse-MAML (the default command)"),
                   ("omniglot_5way_maml", "Omniglot 5-way 1-shot, MAML"),
                   ("omniglot_5way_sparse_maml", "Omniglot 5-way 1-shot, sparse-MAML"))


def precision_score(record):
    """(the test metric, its label): accuracy for classifiers, MSE after adaptation else."""
    test = record["results"]["test"]
    if "accuracy" in test:
        return test["accuracy"]["mean"], "accuracy"
    return test["loss"]["mean"], "MSE"


def precision_rows(groups):
    """Per pair with records in both precisions: bf16 − fp32 per seed present in both."""
    rows = []
    for name, title in PRECISION_PAIRS:
        fp32, bf16 = (groups.get(f"{name}_{tag}", []) for tag in PRECISION_TAGS)
        by_seed = {r["seed"]: r for r in fp32}
        pairs = [(by_seed[r["seed"]], r) for r in bf16 if r["seed"] in by_seed]
        if not pairs:
            continue
        label = precision_score(pairs[0][0])[1]
        a = np.array([precision_score(f)[0] for f, _ in pairs])
        b = np.array([precision_score(h)[0] for _, h in pairs])
        rows.append((title, label, a, b, b - a))
    return rows


def precision_section(groups):
    rows = precision_rows(groups)
    if not rows:
        return []

    def cell(values, label, sign=""):
        if label == "accuracy":
            return _interval(values, sign=sign, unit="" if sign else "%")
        mean, half = mean_ci95(values) if len(values) > 1 else (float(values[0]), 0.0)
        return f"{mean:{sign}.3f} ± {half:.3f}"

    records = [r for rs in groups.values() for r in rs]
    lines = ["## bfloat16 against fp32: the accuracy cost", "",
             "The same run at `--mixed_precision=none` and `bfloat16` (the task network in "
             "bfloat16; weights, meta-gradients and optimiser state in float32), seed by seed; "
             "records in [results/fewshot/precision/](results/fewshot/precision/), written by "
             "`python experiments/fewshot_records.py --name=NAME_fp32 "
             "--set=mixed_precision=none ...` and `--name=NAME_bf16 "
             "--set=mixed_precision=bfloat16 ...` with the same other flags. Speed is "
             "measured by `benchmarks/precision.py`.", "",
             "| run | metric | fp32 | bf16 | bf16 − fp32 (paired) | seeds |",
             "|---|---|---|---|---|---|"]
    for title, label, a, b, diff in rows:
        lines.append(f"| {title} | {label} | {cell(a, label)} | {cell(b, label)} | "
                     f"{cell(diff, label, '+')} | {len(diff)} |")
    lines += ["", "Machines and commits: " + "; ".join(machines(records)) + ".", ""]
    return lines


def document(fewshot):
    lines = ["# Results", "",
             "Generated by `python experiments/results_report.py --write` from the records "
             "under [results/](results/); `tests/test_results_documents.py` checks that this "
             "file is what the records give. Every record names its flags, seed, machine "
             "(CPU model and instruction sets) and, where it was written by a records "
             "script, the commit. Compare wall times only within one record's machine.", ""]
    if "sinusoid_sparse_maml" in fewshot:
        lines += sinusoid_section(fewshot["sinusoid_sparse_maml"])
    lines += fewshot_comparison("Omniglot 5-way 1-shot: MAML against sparse-MAML",
                                "omniglot_5way_maml", "omniglot_5way_sparse_maml", fewshot,
                                FIVE_WAY_INTRO)
    lines += fewshot_comparison("Omniglot 20-way 1-shot: MAML against sparse-MAML",
                                *pair_names(fewshot, "20"), fewshot, TWENTY_WAY_INTRO)
    lines += precision_section(load_fewshot(PRECISION))
    lines += sharing_section(os.path.join(RESULTS, "gradient_sharing.json"))
    lines += warpgrad_section()
    lines += ["## Continual learning", "",
              "La-MAML and sparse-La-MAML on rotated and permuted Omniglot, Continual-MAML and "
              "its sparse variant on an OSAKA-style stream, WarpGrad's sequential sine: "
              "[results/continual.md](results/continual.md).", "",
              "## Not measured here", "",
              "Cross-domain scores (CUB-200-2011, Stanford Cars) after miniImageNet training, "
              "and every GPU number: no record of either exists (the datasets are not among "
              "the archives the tests use, and no run has had a GPU). The paths are tested on generated data "
              "([export.md](export.md) shows the commands). Speed and memory are measured by "
              "the scripts in [benchmarks.md](benchmarks.md).", ""]
    all_records = [r for rs in fewshot.values() for r in rs]
    if all_records:
        lines += ["Machines and commits of the few-shot records: "
                  + "; ".join(machines(all_records)) + ".", ""]
    return "\n".join(lines)


def summary(fewshot, continual):
    """README's one table: each method against its baseline, with a link to the records."""
    lines = ["| benchmark | method | score (mean ± 95%) | against | difference (paired) | "
             "seeds | records |", "|---|---|---|---|---|---|---|"]
    if "sinusoid_sparse_maml" in fewshot:
        r = fewshot["sinusoid_sparse_maml"][0]
        test = r["results"]["test"]["loss"]
        lines.append(f"| sinusoid, 10-shot (MSE) | sparse-MAML | {test['mean']:.2f} ± "
                     f"{test['ci95']:.2f} | – | – | 1 | [record](docs/results/fewshot/) |")
    for ways in ("5", "20"):
        dense_name, sparse_name = pair_names(fewshot, ways)
        dense, sparse = fewshot.get(dense_name), fewshot.get(sparse_name)
        if not dense or not sparse:
            continue
        d = {r["seed"]: test_scores(r).mean() for r in dense}
        s = {r["seed"]: test_scores(r).mean() for r in sparse}
        seeds = sorted(set(d) & set(s))
        lines.append(f"| Omniglot {ways}-way 1-shot, unseen alphabets (accuracy) | sparse-MAML "
                     f"| {percent(list(s.values()))} | MAML {percent(list(d.values()))} | "
                     f"{points([s[k] - d[k] for k in seeds])} points | {len(seeds)} | "
                     "[records](docs/results/fewshot/) |")
    paths = sorted(glob.glob(os.path.join(RESULTS, "warpgrad", "warpgrad20_s*.json")))
    if paths:
        seeds = warpgrad_report.load(paths)
        warp = np.concatenate([runs["warp_leap"]["per_task_accuracy"] for _, runs in seeds])
        leap = np.concatenate([runs["leap"]["per_task_accuracy"] for _, runs in seeds])
        lines.append(f"| Omniglot 20-way alphabet tasks, 20 CPU-min (accuracy) | Warp-Leap | "
                     f"{percent(warp)} | Leap {percent(leap)} | {points(warp - leap)} points "
                     f"over {warp.size} tasks | {len(seeds)} | "
                     "[records](docs/results/warpgrad/) |")
    for row in continual_report.summary_rows(continual):
        lines.append(f"| {row['benchmark']} | {row['method']} | {row['score']} | "
                     f"{row['against']} {row['against_score']} | {row['difference']} | "
                     f"{row['seeds']} | [records](docs/results/continual/{row['group']}/) |")
    return "\n".join(lines) + "\n"


def write_plots(fewshot, output_dir=PLOTS):
    from wtl_tf import plots

    written = []
    for ways in ("5", "20"):
        specs = [f"{os.path.join(FEWSHOT, os.path.basename(r['file']))}:"
                 f"{NAMES[r['settings']['algorithm']]}"
                 for name in pair_names(fewshot, ways)
                 for r in fewshot.get(name, [])]
        if specs:
            directory = os.path.join(output_dir, f"omniglot_{ways}way")
            written += plots.plot_runs(specs, directory, formats=("png",))
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--summary", action="store_true", help="print README's table")
    args = parser.parse_args()
    fewshot, continual = load_fewshot(), continual_report.load()
    if args.summary:
        print(summary(fewshot, continual), end="")
        return
    text = document(fewshot)
    if not args.write:
        print(text, end="")
        return
    with open(DOCUMENT, "w") as f:
        f.write(text)
    with open(continual_report.DOCUMENT, "w") as f:
        f.write(continual_report.document(continual))
    readme_path = os.path.join(ROOT, "README.md")
    with open(readme_path) as f:
        readme = f.read()
    with open(readme_path, "w") as f:
        f.write(replace_between(readme, SUMMARY_MARKERS, summary(fewshot, continual)))
    for path in write_plots(fewshot):
        print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
