"""Continual-learning runs through the library's own run (what `train.py` does), one record
per run: the resolved settings, the seed, the tree's commit, the machine, and the results
(the accuracy matrix R or the online accuracy, mask sparsity per layer along the stream, the
fraction of mask entries changed, pretraining's validation curve).

    python experiments/continual_records.py --stream=rotated_omniglot \
        --algorithms=la_maml,sparse_la_maml,c_maml --seeds=0,1,2,3,4 \
        --out=docs/results/continual/rotated_omniglot
    python experiments/continual_records.py --stream=osaka_omniglot --stationarity=0.98 \
        --algorithms=continual_maml,sparse_continual_maml --seeds=0,1,2 \
        --set=stream_steps=500 --set=conv_channels=32 --set=inner_steps=4 \
        --out=docs/results/continual/osaka_p098

`--set=NAME=VALUE` sets any declared setting (values parsed as JSON, else kept as text); a
record that already exists is skipped, so an interrupted batch reruns only what is missing.
Run it from a frozen copy of the tree (a clean checkout of one commit): the records name it.
"""

import argparse
import os
import tempfile
import time

from records import ROOT, commit, parse_value, write_record


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", required=True)
    parser.add_argument("--algorithms", required=True)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--stationarity", type=float, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--arm", default="", help="a name for a variant of a method (its "
                        "--set values), in the record and its file name")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data_dir", default=os.environ.get(
        "WTL_OMNIGLOT_DIR", os.path.join(ROOT, "..", "shared", "data", "omniglot")))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from benchmarks.hardware import hardware_line
    from wtl_tf.config import ExperimentConfig
    from wtl_tf.continual import run as continual_run

    overrides = dict(item.split("=", 1) for item in args.set)
    overrides = {k: parse_value(v) for k, v in overrides.items()}
    if args.stationarity is not None:
        overrides["stationarity"] = args.stationarity
    os.makedirs(args.out, exist_ok=True)
    tree = commit()
    for algorithm in args.algorithms.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            name = f"{args.stream}_{algorithm}{'_' + args.arm if args.arm else ''}_s{seed}.json"
            path = os.path.join(args.out, name)
            if os.path.exists(path):
                print(f"{name}: exists, skipped", flush=True)
                continue
            with tempfile.TemporaryDirectory() as output_dir:
                config = ExperimentConfig(algorithm=algorithm, stream=args.stream, seed=seed,
                                          data_dir=args.data_dir, output_dir=output_dir,
                                          tensorboard=False, **overrides).resolved()
                start = time.perf_counter()
                results, _ = continual_run.run(config)
                seconds = time.perf_counter() - start
            settings = dict(results["config"])
            for machine_specific in ("output_dir", "data_dir"):
                settings.pop(machine_specific, None)
            record = {"algorithm": algorithm, "arm": args.arm, "stream": args.stream,
                      "seed": seed,
                      "given": {"stream": args.stream, "seed": seed, **overrides},
                      "settings": settings, "commit": tree, "hardware": hardware_line(),
                      "tensorflow_threads": args.threads, "wall_seconds": round(seconds, 1),
                      "results": results["continual"]}
            write_record(path, record)
            print(f"{name}: {continual_run.format_summary(results)} ({seconds:.0f} s)",
                  flush=True)


if __name__ == "__main__":
    main()
