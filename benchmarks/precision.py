"""fp32 against bfloat16 meta-steps, alternated in one run: what does bfloat16 buy here?

    python benchmarks/precision.py --configs=omniglot,sparse_maml_mini --rounds=3 --repeats=5 \\
        [--torch_reference] [--record=docs/results/benchmarks/precision.json]
    python benchmarks/precision.py --table [--write]    # docs/benchmarks.md from the record

Each round runs `benchmarks/meta_step.py --config=C` at `--mixed_precision=none` and at
`bfloat16` (alternating which goes first, so a drift of the machine's speed hits both), each
in a fresh process. Printed per configuration: the median over rounds of each run's median
seconds per meta-step and first-trace time, and bf16 / fp32. With --torch_reference the fp32
runs also time the PyTorch reference (needs torch), so the seed code is measured in the same
run. bfloat16 runs the task network in bfloat16 with float32 weights, meta-gradients and
optimiser state; on a CPU without AVX512_BF16 or AMX, TensorFlow emulates it and it is
slower. The hardware line names the CPU and its flags.
"""

import argparse
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "experiments"))

from benchmarks.compare_trees import run_once  # noqa: E402
from benchmarks.hardware import hardware_line  # noqa: E402
from records import commit, replace_between, write_record  # noqa: E402  (experiments/)

PRECISIONS = {"fp32": "none", "bf16": "bfloat16"}
DOCUMENT = os.path.join(ROOT, "docs", "benchmarks.md")
RECORD = os.path.join(ROOT, "docs", "results", "benchmarks", "precision.json")
# The same comparison with TensorFlow's oneDNN custom operations off: the kernels TensorFlow
# uses by default on CPUs without AVX512-VNNI/BF16 or AMX (bfloat16 emulated by Eigen),
# measured on the same machine. (Holding oneDNN to AVX2 with ONEDNN_MAX_CPU_ISA instead makes
# TensorFlow's bf16 convolutions fail: it picks them by the CPU's flags.)
ONEDNN_OFF_RECORD = os.path.join(ROOT, "docs", "results", "benchmarks",
                                 "precision_onednn_off.json")
TABLE_MARKERS = ("<!-- precision table: benchmarks/precision.py --table --write -->",
                 "<!-- end of precision table -->")
KEPT = ("median_s", "times_s", "trace_s", "first_call_s", "device", "precision", "torch")


def summary(runs):
    """Per precision: the median over rounds of each run's median step and first trace; the
    PyTorch reference's median over the fp32 rounds that timed it (None when none did)."""
    step = {n: statistics.median(x["median_s"] for x in rs) for n, rs in runs.items()}
    trace = {n: statistics.median(x["trace_s"] for x in rs) for n, rs in runs.items()}
    torch_steps = [x["torch"]["median_s"] for x in runs["fp32"] if x.get("torch")]
    return step, trace, statistics.median(torch_steps) if torch_steps else None


def table(record, path=RECORD):
    """The Markdown table of a record: fp32 and bf16 side by side, PyTorch in the same run."""
    torch, off = record.get("torch_version"), record.get("onednn_off")
    lines = [f"{record['rounds']} alternated rounds of fresh processes per precision, "
             f"{record['repeats']} timed meta-steps each, measured on {record['hardware']} "
             f"with TensorFlow {record['tensorflow']}" +
             (", TensorFlow's oneDNN custom operations off (`TF_ENABLE_ONEDNN_OPTS=0`: the "
              "kernels it uses by default on CPUs without AVX512-VNNI/BF16 or AMX, bfloat16 "
              "emulated)" if off else "") +
             (f" and PyTorch {torch} (the seed code's loop, fp32, in the fp32 processes)"
              if torch else "") +
             f" (the record, `{os.path.relpath(path, ROOT)}`, names the tree).", "",
             "| configuration | fp32 s/step (rounds' range) | bf16 s/step (rounds' range) | "
             "bf16/fp32 | the rounds say | first trace fp32 / bf16 (s) | PyTorch s/step | "
             "PyTorch/fp32 | PyTorch/bf16 |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for config, runs in sorted(record["configs"].items()):
        step, trace, reference = summary(runs)
        cells = ([f"{reference:.3f}", f"{reference / step['fp32']:.2f}x",
                  f"{reference / step['bf16']:.2f}x"] if reference else ["-", "-", "-"])
        spread = {n: "{:.3f}–{:.3f}".format(min(x["median_s"] for x in rs),
                                             max(x["median_s"] for x in rs))
                  for n, rs in runs.items()}
        lines.append(f"| {config} | {step['fp32']:.3f} ({spread['fp32']}) | {step['bf16']:.3f} "
                     f"({spread['bf16']}) | "
                     f"{step['bf16'] / step['fp32']:.3f} | {_rounds_say(runs)} | "
                     f"{trace['fp32']:.2f} / "
                     f"{trace['bf16']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _rounds_say(runs):
    """Whether every round's bf16 step was faster (or slower) than every fp32 one."""
    fp32, bf16 = ([x["median_s"] for x in runs[n]] for n in ("fp32", "bf16"))
    if max(bf16) < min(fp32):
        return "bf16 faster in every round"
    if min(bf16) > max(fp32):
        return "bf16 slower in every round"
    return "ranges overlap: no difference shown"


def records():
    """(path, record) of the committed records: oneDNN on, then off if measured."""
    found = []
    for path in (RECORD, ONEDNN_OFF_RECORD):
        if os.path.exists(path):
            with open(path) as f:
                found.append((path, json.load(f)))
    return found


def document(found, text):
    tables = "\n\n".join(table(record, path) for path, record in found)
    return replace_between(text, TABLE_MARKERS, tables + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="omniglot,sparse_maml_mini")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch_reference", action="store_true")
    parser.add_argument("--record", help="write the measurements to this JSON file")
    parser.add_argument("--onednn_off", action="store_true", help="TF_ENABLE_ONEDNN_OPTS=0 in "
                        "the measured processes: the kernels of CPUs without AVX512-VNNI/BF16 "
                        "or AMX, where bf16 is emulated")
    parser.add_argument("--table", action="store_true", help="print docs/benchmarks.md's "
                        "table from the committed record instead of measuring")
    parser.add_argument("--write", action="store_true", help="with --table: rewrite the table "
                        "in docs/benchmarks.md")
    args = parser.parse_args()
    if args.table:
        if not args.write:
            print("\n\n".join(table(record, path) for path, record in records()))
            return
        with open(DOCUMENT) as f:
            text = f.read()
        with open(DOCUMENT, "w") as f:
            f.write(document(records(), text))
        return
    if args.onednn_off:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"  # read by the measured processes
    from importlib.metadata import version  # TensorFlow itself loads only in the children

    record = {"hardware": hardware_line(), "tensorflow": version("tensorflow"),
              "commit": commit(),
              "rounds": args.rounds, "repeats": args.repeats, "torch_version": None,
              "onednn_off": args.onednn_off, "configs": {}}
    print(f"hardware: {record['hardware']}", flush=True)
    for config in args.configs.split(","):
        runs = {name: [] for name in PRECISIONS}
        for r in range(args.rounds):
            for name in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
                extra = [f"--mixed_precision={PRECISIONS[name]}"]
                if args.torch_reference and name == "fp32":
                    extra.append("--torch_reference")
                result = run_once(ROOT, config, args.repeats, extra)
                runs[name].append(result)
                torch = result.get("torch") or {}
                print(f"  {config} round {r + 1} {name}: median {result['median_s']:.3f} s, "
                      f"first trace {result['trace_s']:.2f} s" +
                      (f"; PyTorch {torch['median_s']:.3f} s" if torch else ""), flush=True)
        record["configs"][config] = {n: [{k: x.get(k) for k in KEPT} for x in rs]
                                     for n, rs in runs.items()}
        step, trace, reference = summary(runs)
        line = (f"{config}: fp32 {step['fp32']:.3f} s/step (trace {trace['fp32']:.2f} s), bf16 "
                f"{step['bf16']:.3f} s/step (trace {trace['bf16']:.2f} s); bf16/fp32 step "
                f"{step['bf16'] / step['fp32']:.3f}")
        if reference:
            record["torch_version"] = next(x["torch"]["torch"] for x in runs["fp32"]
                                           if x.get("torch"))
            line += (f"; PyTorch reference {reference:.3f} s/step: fp32 "
                     f"{reference / step['fp32']:.2f}x, bf16 {reference / step['bf16']:.2f}x "
                     "faster")
        print(line, flush=True)
    if args.record:
        os.makedirs(os.path.dirname(os.path.abspath(args.record)), exist_ok=True)
        write_record(args.record, record)


if __name__ == "__main__":
    main()
