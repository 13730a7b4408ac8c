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

A meta-pretrained start: `--pretrain_seeds=100,101,102` first learns those held-out streams
in turn (each run starting from the one before, `--start_from`; `--pretrain_set` overrides
`--set` for them), records them under OUT/pretraining/, keeps their run directories under
--pretrain_dir, and starts every seed's stream from the last of them:

    python experiments/continual_records.py --stream=rotated_omniglot \
        --algorithms=sparse_la_maml --seeds=0,1 --set=mask_lr=0 --pretrain_seeds=100,101,102 \
        --pretrain_set=mask_lr=10 --arm=pretrained_mask_frozen --out=OUT
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
    parser.add_argument("--pretrain_seeds", default="", help="held-out streams learned first, "
                        "in turn; every seed's stream starts from the last (--start_from)")
    parser.add_argument("--pretrain_set", action="append", default=[], metavar="NAME=VALUE",
                        help="the pretraining runs' settings where they differ from --set")
    parser.add_argument("--pretrain_dir", default=os.path.join(tempfile.gettempdir(),
                                                               "wtl_pretraining"),
                        help="where the pretraining runs' directories are kept")
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
    tree, machine = commit(), hardware_line()

    def run_and_record(algorithm, seed, given, path, output_dir):
        config = ExperimentConfig(algorithm=algorithm, stream=args.stream, seed=seed,
                                  data_dir=args.data_dir, output_dir=output_dir,
                                  tensorboard=False, **given).resolved()
        start = time.perf_counter()
        results, _ = continual_run.run(config)
        seconds = time.perf_counter() - start
        settings = dict(results["config"])
        for machine_specific in ("output_dir", "data_dir", "start_from"):
            settings.pop(machine_specific, None)
        record = {"algorithm": algorithm, "arm": args.arm, "stream": args.stream, "seed": seed,
                  "given": {"stream": args.stream, "seed": seed, **given}, "settings": settings,
                  "commit": tree, "hardware": machine, "tensorflow_threads": args.threads,
                  "wall_seconds": round(seconds, 1), "results": results["continual"]}
        record["given"].pop("start_from", None)
        if pretrained:
            record["pretrained_on"] = list(pretrained)  # the held-out runs before this one
        write_record(path, record)
        print(f"{os.path.basename(path)}: {continual_run.format_summary(results)} "
              f"({seconds:.0f} s)", flush=True)

    for algorithm in args.algorithms.split(","):
        arm = f"{args.stream}_{algorithm}{'_' + args.arm if args.arm else ''}"
        pretrained, start_from = [], {}
        if args.pretrain_seeds:
            pretraining = {**overrides, **{k: parse_value(v) for k, v in (
                item.split("=", 1) for item in args.pretrain_set)}}
            os.makedirs(os.path.join(args.out, "pretraining"), exist_ok=True)
            for seed in (int(s) for s in args.pretrain_seeds.split(",")):
                run_dir = os.path.join(args.pretrain_dir, f"{arm}_pretrain_s{seed}")
                path = os.path.join(args.out, "pretraining", f"{arm}_pretrain_s{seed}.json")
                if not (os.path.exists(path) and os.path.exists(
                        os.path.join(run_dir, "results.json"))):
                    run_and_record(algorithm, seed, {**pretraining, **start_from}, path, run_dir)
                pretrained.append(seed)
                start_from = {"start_from": run_dir}
        for seed in (int(s) for s in args.seeds.split(",")):
            path = os.path.join(args.out, f"{arm}_s{seed}.json")
            if os.path.exists(path):
                print(f"{os.path.basename(path)}: exists, skipped", flush=True)
                continue
            with tempfile.TemporaryDirectory() as output_dir:
                run_and_record(algorithm, seed, {**overrides, **start_from}, path, output_dir)


if __name__ == "__main__":
    main()
