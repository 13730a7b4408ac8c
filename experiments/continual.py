"""Continual-learning comparisons on offline Omniglot streams and the sequential sine.

    python experiments/continual.py --benchmark=rotated --seeds=0,1,2      # La-MAML family
    python experiments/continual.py --benchmark=permuted --seeds=0,1,2
    python experiments/continual.py --benchmark=osaka --p=0.98 --steps=2000 --seeds=0,1,2
    python experiments/continual.py --benchmark=sine --seeds=0,1,2 --meta_iterations=200

Rotated / permuted Omniglot (docs/continual.md): 20 tasks of 20 characters, MLP
784-100-100-20, single pass, batches of 10, the section-1 MNIST hyperparameters (La-MAML
glances 5, alpha0 0.15, eta_alpha 0.3; C-MAML alpha0 0.1 / 0.03, eta 0.1; Sync alpha0 0.15,
eta_alpha 0.1, eta_theta 0.3 / 0.1; memories 200, replay 10, clip 2.0), sparse-La-MAML with
La-MAML's numbers and a kaiming mask. Reports RA, LA and BTI (both normalisations), mean
+- 95% CI over seeds, and the mask's final sparsity.
OSAKA (6.3): Continual-MAML and sparse-C-MAML on the OSAKA-style stream (10-way 5-shot, the
paper's best p-specific configuration), from a Conv4 MAML-pretrained on the pretraining
alphabets for --pretrain_iterations; online cumulative accuracy overall and per mode.
Sine (section 4): WarpGrad's warp layers meta-learned for --meta_iterations against plain SGD;
per-interval MSE after the sequence on 50 held-out sine tasks.
Writes everything to --output (JSON) and prints a Markdown table. Run it from a frozen copy
of the tree when editing the code meanwhile.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from wtl_tf.algorithms import learner_options  # noqa: E402
from wtl_tf.meta_test import mean_ci95  # noqa: E402

SMALL = ("images_background_small1", "images_background_small2")
LA_MAML_SETTINGS = {  # docs/continual.md, MNIST rows (rotations / permutations)
    "rotated": {"la_maml": dict(glances=5, alpha_init=0.15, alpha_lr=0.3),
                "sparse_la_maml": dict(glances=5, alpha_init=0.15, alpha_lr=0.3,
                                       mask_init="kaiming"),
                "c_maml": dict(glances=5, alpha_init=0.1, theta_lr=0.1),
                "sync_la_maml": dict(glances=5, alpha_init=0.15, alpha_lr=0.1, theta_lr=0.3)},
    "permuted": {"la_maml": dict(glances=5, alpha_init=0.15, alpha_lr=0.3),
                 "sparse_la_maml": dict(glances=5, alpha_init=0.15, alpha_lr=0.3,
                                        mask_init="kaiming"),
                 "c_maml": dict(glances=5, alpha_init=0.03, theta_lr=0.1),
                 "sync_la_maml": dict(glances=5, alpha_init=0.15, alpha_lr=0.1, theta_lr=0.1)},
}
OSAKA_SETTINGS = {0.98: dict(meta_lr=1e-4, inner_steps=8, lam=0.25, gamma=2.5),
                  0.90: dict(meta_lr=5e-4, inner_steps=16, lam=0.25, gamma=2.0)}


def la_maml_runs(args, class_images):
    import tensorflow as tf

    from wtl_tf import models
    from wtl_tf.continual import metrics, streams
    from wtl_tf.continual.la_maml import LaMAML

    build = streams.rotated_omniglot if args.benchmark == "rotated" else streams.permuted_omniglot
    results = {}
    for variant, options in LA_MAML_SETTINGS[args.benchmark].items():
        for seed in args.seeds:
            stream = build(class_images, tasks=args.tasks, seed=seed)
            tf.keras.utils.set_random_seed(seed)
            learner = LaMAML(models.mlp(784, (100, 100), stream.classes),
                             **learner_options(variant), memories=200,
                             replay_size=10, clip=2.0, seed=seed, **options)
            start, r = time.perf_counter(), []
            for task in stream.tasks:
                for x, y in task.train_batches(10):
                    learner.observe(x.numpy(), y.numpy(), task.index)
                r.append([learner.accuracy(t.test_x, t.test_y) for t in stream.tasks])
            seconds = time.perf_counter() - start
            record = {**metrics.summary(r), "R": r, "seconds": seconds,
                      "seconds_per_1000_steps": 1000 * seconds / int(learner.observed.numpy()),
                      "mask_sparsity": learner.mask_sparsity()}
            results.setdefault(variant, []).append(record)
            print(f"{variant} seed {seed}: RA {record['retained_accuracy']:.3f} LA "
                  f"{record['learning_accuracy']:.3f} BTI {record['backward_transfer']:.3f} "
                  f"({seconds:.0f} s)", flush=True)
    return results


def osaka_runs(args, class_images):
    import tensorflow as tf

    from wtl_tf import MetaLearner, models, rules
    from wtl_tf.continual import osaka
    from wtl_tf.data.class_images import episode_source
    from wtl_tf.episodes import EpisodeSampler

    settings = dict(OSAKA_SETTINGS[args.p])
    if args.inner_steps:
        settings["inner_steps"] = args.inner_steps  # below the reference: stated with the results
    results = {}
    for seed in args.seeds:
        stream = osaka.osaka_stream(class_images, steps=args.steps, p=args.p, seed=seed)
        pretrain = [(class_images.names[c], 0) for c in stream.classes_by_mode["pretrain"]]
        tf.keras.utils.set_random_seed(seed)
        net = models.conv4((28, 28, 1), 10, channels=args.channels)
        learner = MetaLearner(net, rules.chain(rules.Scale(0.1)), inner_steps=5, first_order=True)
        learner.compile(optimizer=tf.keras.optimizers.Adam(1e-3), meta_optimizer=None)
        sampler = EpisodeSampler(episode_source(class_images, pretrain, "train"), 10, 5, 5, seed,
                                 "train")  # images in [0, 1], as the stream gives them
        if args.pretrain_iterations:
            learner.fit(sampler.dataset(4), steps_per_epoch=args.pretrain_iterations, epochs=1,
                        verbose=0)
        weights = [v.numpy() for v in net.weights]
        for name, mask in (("continual_maml", None), ("sparse_continual_maml", "per_weight")):
            for v, w in zip(net.weights, weights):
                v.assign(w)
            cl = osaka.ContinualMAML(net, inner_lr=0.1, mask=mask,
                                     mask_init="kaiming" if mask else "constant", **settings)
            start = time.perf_counter()
            for t in range(len(stream)):
                cl.observe(*stream.batch(t))
            seconds = time.perf_counter() - start
            record = {"online_accuracy": osaka.online_accuracy(cl.records, stream.modes),
                      "boundaries": osaka.boundary_scores(cl.records, stream.switches),
                      "seconds_per_1000_steps": 1000 * seconds / len(stream),
                      "mask_sparsity": cl.mask_sparsity()}
            results.setdefault(name, []).append(record)
            print(f"{name} seed {seed}: online accuracy "
                  f"{record['online_accuracy']['overall']:.3f} ({seconds:.0f} s)", flush=True)
    return results


def sine_runs(args):
    from wtl_tf.continual.warp_sine import SequentialSine, WarpedSine

    results = {}
    for seed in args.seeds:
        tasks = SequentialSine(seed=seed)
        warped = WarpedSine(seed=seed)
        plain = WarpedSine(seed=seed, learn_warp=False)
        start = time.perf_counter()
        for it in range(args.meta_iterations):
            warped.meta_step([tasks.task(it * 4 + j) for j in range(4)], seed=it)
        seconds = time.perf_counter() - start
        test = [tasks.task(i, "test") for i in range(50)]
        for name, learner in (("warpgrad", warped), ("sgd", plain)):
            mse = np.array([learner.interval_mse(x, y, seed=i) for i, (x, y) in enumerate(test)])
            results.setdefault(name, []).append({"interval_mse": mse.mean(0).tolist(),
                                                 "mean_mse": float(mse.mean()),
                                                 "meta_train_seconds": seconds})
        print(f"seed {seed}: warpgrad {results['warpgrad'][-1]['mean_mse']:.3f} "
              f"sgd {results['sgd'][-1]['mean_mse']:.3f}", flush=True)
    return results


def table(results, keys):
    lines = ["| method | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for method, runs in results.items():
        cells = []
        for key in keys:
            values = list(runs)
            for part in key.split("."):  # a mode a short stream never visited: left out
                values = [v[part] for v in values if part in v]
            values = [v for v in values if v == v]
            mean, ci = mean_ci95(values) if values else (float("nan"), float("nan"))
            cells.append(f"{mean:.3f} ± {ci:.3f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", choices=["rotated", "permuted", "osaka", "sine"],
                        required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--p", type=float, default=0.98, choices=[0.98, 0.90])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--pretrain_iterations", type=int, default=500)
    parser.add_argument("--inner_steps", type=int, default=0,
                        help="OSAKA: fast-weight steps per batch (0: the reference's 8 / 16)")
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra/inter-op threads (0: TensorFlow's default); 1 "
                             "leaves the other core free")
    parser.add_argument("--meta_iterations", type=int, default=200)
    parser.add_argument("--data_dir", default=os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
        "omniglot"))
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if args.benchmark == "sine":
        results = sine_runs(args)
        keys = ["mean_mse"]
    else:
        from wtl_tf.data import omniglot

        images = omniglot.load(args.data_dir, SMALL, image_size=28)
        if args.benchmark == "osaka":
            results = osaka_runs(args, images)
            keys = ["online_accuracy.overall", "online_accuracy.pretrain",
                    "online_accuracy.ood1", "online_accuracy.ood2", "boundaries.precision",
                    "boundaries.recall", "seconds_per_1000_steps"]
        else:
            results = la_maml_runs(args, images)
            keys = ["retained_accuracy", "learning_accuracy", "backward_transfer",
                    "backward_transfer_over_T", "seconds_per_1000_steps"]
    from benchmarks.hardware import hardware_line

    print(table(results, keys))
    print(f"on {hardware_line()}, {args.threads or 'default'} TensorFlow threads")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"args": vars(args), "hardware": hardware_line(), "results": results}, f,
                      indent=1)


if __name__ == "__main__":
    main()
