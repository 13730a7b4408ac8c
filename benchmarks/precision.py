"""fp32 against bfloat16 meta-steps, alternated in one run: what does bfloat16 buy here?

    python benchmarks/precision.py --configs=omniglot,sparse_maml_mini --rounds=3 --repeats=5 \\
        [--torch_reference]

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
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.compare_trees import run_once  # noqa: E402
from benchmarks.hardware import hardware_line  # noqa: E402

PRECISIONS = {"fp32": "none", "bf16": "bfloat16"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="omniglot,sparse_maml_mini")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch_reference", action="store_true")
    args = parser.parse_args()
    tree = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(f"hardware: {hardware_line()}", flush=True)
    for config in args.configs.split(","):
        runs = {name: [] for name in PRECISIONS}
        for r in range(args.rounds):
            for name in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
                extra = [f"--mixed_precision={PRECISIONS[name]}"]
                if args.torch_reference and name == "fp32":
                    extra.append("--torch_reference")
                result = run_once(tree, config, args.repeats, extra)
                runs[name].append(result)
                torch = result.get("torch") or {}
                print(f"  {config} round {r + 1} {name}: median {result['median_s']:.3f} s, "
                      f"first trace {result['trace_s']:.2f} s" +
                      (f"; PyTorch {torch['median_s']:.3f} s" if torch else ""), flush=True)
        step = {n: statistics.median(x["median_s"] for x in rs) for n, rs in runs.items()}
        trace = {n: statistics.median(x["trace_s"] for x in rs) for n, rs in runs.items()}
        line = (f"{config}: fp32 {step['fp32']:.3f} s/step (trace {trace['fp32']:.2f} s), bf16 "
                f"{step['bf16']:.3f} s/step (trace {trace['bf16']:.2f} s); bf16/fp32 step "
                f"{step['bf16'] / step['fp32']:.3f}")
        torch_steps = [x["torch"]["median_s"] for x in runs["fp32"] if x.get("torch")]
        if torch_steps:
            reference = statistics.median(torch_steps)
            line += (f"; PyTorch reference {reference:.3f} s/step: fp32 "
                     f"{reference / step['fp32']:.2f}x, bf16 {reference / step['bf16']:.2f}x "
                     "faster")
        print(line, flush=True)


if __name__ == "__main__":
    main()
