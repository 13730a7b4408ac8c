"""Two checkouts' continual runs end to end, alternated in one run: is a change slower?

    python benchmarks/stream_runs.py --old=/path/to/old/checkout --new=. --rounds=3

`benchmarks/continual_steps.py` times a learner's `observe` alone; this times what a user
waits for: `train.py` of each tree on the same stream and seed, in fresh processes, old and
new alternating which goes first. Reported per run: results.json's seconds per 1,000 stream
steps (the stream's loop, its first step's tracing included; not the building of the stream
or the pretraining), the median over rounds of each tree and the ratio new / old.
`--cores=1,2` repeats the comparison with the processes pinned to that many cores (taskset:
TensorFlow sizes its thread pools to the cores it may use).
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


def seconds_per_1000(tree, name, scratch, cores=None):
    output_dir = tempfile.mkdtemp(dir=scratch)
    pin = ["taskset", "-c", ",".join(str(c) for c in range(cores))] if cores else []
    command = [*pin, sys.executable, os.path.join(tree, "train.py"), *RUNS[name],
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
    parser.add_argument("--cores", default="", help="comma-separated core counts to pin to "
                        "(default: every core, unpinned)")
    args = parser.parse_args()
    cores = [int(c) for c in args.cores.split(",") if c] or [None]
    trees = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    print(f"hardware: {hardware_line()}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.runs.split(","):
            for count in cores:
                label = f"{name} ({count} core{'s' * (count != 1)})" if count else name
                times = {"old": [], "new": []}
                for r in range(args.rounds):
                    for tree in (("old", "new") if r % 2 == 0 else ("new", "old")):
                        times[tree].append(seconds_per_1000(trees[tree], name, scratch, count))
                        print(f"  {label} round {r + 1} {tree}: {times[tree][-1]:.1f} s per "
                              "1000 steps", flush=True)
                old, new = (statistics.median(times[t]) for t in ("old", "new"))
                print(f"{label}: old {old:.1f}, new {new:.1f} s per 1000 steps (medians of "
                      f"{args.rounds}); new/old {new / old:.3f}", flush=True)


if __name__ == "__main__":
    main()
