"""Two checkouts' continual runs end to end, alternated in one run: is a change slower?

    python benchmarks/stream_runs.py --old=/path/to/old/checkout --new=. --rounds=3

`benchmarks/continual_steps.py` times a learner's `observe` alone; this times what a user
waits for: `train.py` of each tree on the same stream and seed, in fresh processes, old and
new alternating which goes first. Reported per run: results.json's seconds per 1,000 stream
steps (the stream's loop, its first step's tracing included; not the building of the stream
or the pretraining), the median over rounds of each tree and the ratio new / old.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.hardware import hardware_line  # noqa: E402
from benchmarks.same_behaviour import DATA  # noqa: E402

RUNS = {
    "la_maml": ["--algorithm=la_maml", "--stream=rotated_omniglot", "--stream_tasks=10",
                f"--data_dir={DATA}"],
    "sparse_continual_maml": ["--algorithm=sparse_continual_maml", "--stream_steps=300",
                              "--pretrain_iterations=0", "--conv_channels=32",
                              f"--data_dir={DATA}"],
}


def seconds_per_1000(tree, name, scratch):
    output_dir = tempfile.mkdtemp(dir=scratch)
    command = [sys.executable, os.path.join(tree, "train.py"), *RUNS[name],
               f"--output_dir={output_dir}", "--tensorboard=false", "--verbose=0"]
    proc = subprocess.run(command, cwd=tree, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if proc.returncode:
        raise SystemExit(f"{tree}: {name} failed: {proc.stderr.strip().splitlines()[-1:]}")
    with open(os.path.join(output_dir, "results.json")) as f:
        return json.load(f)["continual"]["seconds_per_1000_steps"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", default=".")
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    print(f"hardware: {hardware_line()}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.runs.split(","):
            times = {"old": [], "new": []}
            for r in range(args.rounds):
                for tree in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    times[tree].append(seconds_per_1000(trees[tree], name, scratch))
                    print(f"  {name} round {r + 1} {tree}: {times[tree][-1]:.1f} s per 1000 "
                          "steps", flush=True)
            old, new = (statistics.median(times[t]) for t in ("old", "new"))
            print(f"{name}: old {old:.1f}, new {new:.1f} s per 1000 steps (medians of "
                  f"{args.rounds}); new/old {new / old:.3f}", flush=True)


if __name__ == "__main__":
    main()
