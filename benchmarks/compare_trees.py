"""Two checkouts' meta-step speed, alternated in one run: is a change slower?

    python benchmarks/compare_trees.py --old=/path/to/old/checkout --new=. \
        --configs=omniglot,sparse_maml_mini --rounds=3 --repeats=5

Each round runs `benchmarks/meta_step.py --config=C` of the old tree, then of the new one
(alternating which goes first, so a drift of the machine's speed hits both), each in a fresh
process. Printed per configuration and tree: the median over rounds of each run's median
seconds per meta-step and of its first-trace time, and the ratio new / old. The hardware
line comes from the first run.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def run_once(tree, config, repeats, extra=()):
    """benchmarks/meta_step.py of `tree` in a fresh process (with `extra` flags): its JSON."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    command = [sys.executable, os.path.join(tree, "benchmarks", "meta_step.py"),
               f"--config={config}", f"--repeats={repeats}", f"--json_out={out}", *extra]
    proc = subprocess.run(command, cwd=tree, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: meta_step.py --config={config} failed:\n{proc.stderr[-2000:]}")
    with open(out) as f:
        result = json.load(f)
    os.remove(out)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", default=".")
    parser.add_argument("--configs", default="omniglot,sparse_maml_mini")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    trees = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    for config in args.configs.split(","):
        runs = {"old": [], "new": []}
        for r in range(args.rounds):
            for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
                result = run_once(trees[name], config, args.repeats)
                runs[name].append(result)
                if r == 0 and name == "old":
                    print(f"hardware: {result['device']}; thread policy: {result['policy']}",
                          flush=True)
                print(f"  {config} round {r + 1} {name}: median {result['median_s']:.3f} s, "
                      f"first trace {result['trace_s']:.2f} s", flush=True)
        summary = {name: (statistics.median(x["median_s"] for x in rs),
                          statistics.median(x["trace_s"] for x in rs))
                   for name, rs in runs.items()}
        (old_step, old_trace), (new_step, new_trace) = summary["old"], summary["new"]
        print(f"{config}: old {old_step:.3f} s/step (trace {old_trace:.2f} s), new "
              f"{new_step:.3f} s/step (trace {new_trace:.2f} s); new/old step "
              f"{new_step / old_step:.3f}, trace {new_trace / old_trace:.3f}", flush=True)


if __name__ == "__main__":
    main()
