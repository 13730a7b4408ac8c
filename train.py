"""Meta-train a learner: absl flags -> data + task network + update rule -> fit -> meta-test.

    python train.py                                   # sparse-MAML on sinusoid (offline)
    python train.py --flagfile=configs/omniglot_sparse_maml.cfg
    python train.py --algorithm=maml --order=second --inner_lr=0.4 ...

Every flag left unset takes the dataset's or the algorithm's default; the resolved values
are written to <output_dir>/config.json and <output_dir>/flags.txt.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from wtl_tf import algorithms  # noqa: E402
from wtl_tf.config import DATASET_DEFAULTS, ExperimentConfig  # noqa: E402
from wtl_tf.errors import WtlError  # noqa: E402

FLAGS = flags.FLAGS
_NONE = "unset: the dataset's or algorithm's default"

# What to learn.
flags.DEFINE_string("algorithm", "sparse_maml", f"one of: {', '.join(algorithms.ALGORITHMS)}")
flags.DEFINE_list("update_rules", None, "explicit inner-loop chain overriding the algorithm's, "
                  f"e.g. binary_mask,learned_rates; links: {', '.join(algorithms.LINKS)}")
flags.DEFINE_enum("order", None, ["first", "second"], f"meta-gradient order ({_NONE})")
flags.DEFINE_string("adapt", None, "tensors that adapt: all | head (ANIL) | body (BOIL) | "
                    f"regex:<pattern> ({_NONE})")
flags.DEFINE_bool("adapt_batchnorm", None, f"BatchNorm gamma/beta adapt in the inner loop ({_NONE})")
flags.DEFINE_string("mask_init", None, "mask/rate init: kaiming | uniform | constant | meta_sgd")
flags.DEFINE_float("init_shift", 0.0, "added to kaiming/uniform mask inits after centring")
flags.DEFINE_bool("learn_inner_lr", False, "meta-learn the scalar inner learning rate alpha")
flags.DEFINE_float("share_decay", 0.9, "gradient sharing: decay of the moving average of past "
                   "batch-mean inner gradients")
flags.DEFINE_bool("share_per_layer", False, "gradient sharing: coefficients per inner step and "
                  "layer (default: per inner step)")
flags.DEFINE_bool("share_concurrent_at_eval", False, "gradient sharing: adapt meta-test batches "
                  "in lock-step, each task sharing the others' gradients (default: each task "
                  "alone, as one new task would be)")
flags.DEFINE_bool("share_past_at_eval", True, "gradient sharing: keep the (frozen) moving-average "
                  "term when adapting at meta-test")

# WarpGrad.
flags.DEFINE_bool("warp_layers", None, f"add warp layers to the task network ({_NONE})")
flags.DEFINE_integer("warp_depth", 1, "convolutions per warp layer")
flags.DEFINE_string("warp_activation", None, "activation between a warp layer's convolutions")
flags.DEFINE_bool("warp_residual", False, "warp layers add their input (residual)")
flags.DEFINE_bool("warp_batchnorm", False, "BatchNorm between a warp layer's convolutions")
flags.DEFINE_integer("task_batch", None, "examples per inner step, drawn from the support set "
                     f"(unset: all; {_NONE})")
flags.DEFINE_enum("replay", "lookahead", ["lookahead", "approximate"], "Warp-Leap's warp "
                  "objective: one-step look-ahead (reference) or the loss at the stored state")
flags.DEFINE_integer("replay_batch", 1, "Warp-Leap: stored states per warp update (1: reference)")

# The data.
flags.DEFINE_string("dataset", "sinusoid", f"one of: {', '.join(DATASET_DEFAULTS)}")
flags.DEFINE_string("data_dir", None, "where the dataset's files are (image datasets); missing "
                    "Omniglot archives are downloaded there (default ~/.cache/wtl_tf/omniglot)")
flags.DEFINE_enum("data_source", "auto", ["auto", "archives", "tfds", "csv", "pickle"],
                  "Omniglot: archives (auto) or tfds; miniImageNet: csv or pickle (auto-detected)")
flags.DEFINE_integer("image_channels", 3, "channels of --dataset=folder images (1 or 3)")
flags.DEFINE_string("split", None, "class split: a shipped name (datasets/splits/*.json), a JSON "
                    f"file or a directory of train/val/test.txt ({_NONE})")
flags.DEFINE_integer("image_size", None, f"images are resized to this square size ({_NONE})")
flags.DEFINE_string("model", None, "task network: mlp | conv4 | resnet12 | warpgrad_conv4 "
                    f"({_NONE})")
flags.DEFINE_integer("conv_channels", 64, "filters per layer of conv4 / warpgrad_conv4; resnet12: "
                     "its first stage (then x2, x4, x8: 64 is the reference 64-128-256-512)")
flags.DEFINE_integer("ways", None, f"classes per episode ({_NONE})")
flags.DEFINE_integer("shots", None, f"support examples per class ({_NONE})")
flags.DEFINE_integer("queries", None, f"query examples per class ({_NONE})")

# The inner loop.
flags.DEFINE_integer("inner_steps", None, f"inner steps during meta-training ({_NONE})")
flags.DEFINE_integer("inner_steps_eval", None, f"inner steps at evaluation ({_NONE})")
flags.DEFINE_float("inner_lr", None, f"inner learning rate alpha ({_NONE})")
flags.DEFINE_bool("recompute_inner_steps", False, "second order: recompute each inner step in "
                  "the outer backward pass instead of keeping its activations (less memory for "
                  "long inner loops, same results)")
flags.DEFINE_integer("unroll_inner_steps", None, "inner loops up to this length are unrolled into "
                     "the graph, longer ones run in a tf.while_loop: same results; unrolled "
                     "runs faster, a loop traces faster (default: max(40, --inner_steps))")
flags.DEFINE_bool("vectorize_tasks", None, "batch the tasks' meta-gradients with "
                  "tf.vectorized_map instead of looping over tasks: same gradients, faster for "
                  "small networks (default: on for sinusoid, off for convolutional networks)")
flags.DEFINE_bool("transductive", True, "query BatchNorm uses query statistics (reference); "
                  "false: support statistics only")

# The outer loop.
flags.DEFINE_integer("meta_batch_size", None, f"tasks per meta-update ({_NONE})")
flags.DEFINE_integer("meta_iterations", None, f"meta-updates ({_NONE})")
flags.DEFINE_float("max_train_minutes", None, "stop meta-training after this much wall time "
                   "(the meta-test still runs)")
flags.DEFINE_enum("outer_optimizer", None, ["adam", "sgd", "sgd_nesterov"],
                  "optimiser of theta (unset: the dataset's, else adam)")
flags.DEFINE_float("outer_lr", None, f"learning rate of theta ({_NONE})")
flags.DEFINE_float("outer_clip", None, "clip theta's gradients to [-c, c]")
flags.DEFINE_enum("meta_optimizer", None, ["adam", "sgd", "sgd_nesterov"],
                  "optimiser of masks/rates/warp layers (unset: the dataset's, else adam; "
                  "Warp-Leap always uses SGD inside its replay)")
flags.DEFINE_float("meta_lr", None, "learning rate of masks/rates/warp layers (default: "
                   "--outer_lr)")
flags.DEFINE_float("meta_clip", None, "clip the meta-parameters' gradients to [-c, c]")
flags.DEFINE_enum("outer_reduction", "sum", ["sum", "mean"], "task losses summed (reference) "
                  "or averaged over the meta-batch")

# Evaluation, output, runtime.
flags.DEFINE_integer("eval_every", None, f"meta-iterations between validations ({_NONE})")
flags.DEFINE_integer("validation_tasks", None, f"fixed validation episodes ({_NONE})")
flags.DEFINE_integer("test_tasks", None, f"held-out episodes in the final meta-test ({_NONE}: "
                     "600 except for omniglot_alphabets)")
flags.DEFINE_integer("eval_batch_size", None, "episodes per evaluation batch (default: meta-batch)")
flags.DEFINE_string("output_dir", "runs/default", "results, learning curve, resolved flags, "
                    "checkpoints (rerunning the same command resumes from them), TensorBoard. "
                    "One run at a time; a resume must keep every training setting (may change: "
                    "--meta_iterations, --max_train_minutes, --test_tasks, --export_dir and "
                    "the output/runtime flags)")
flags.DEFINE_string("export_dir", None, "write a SavedModel of the best meta-learned model here "
                    "(a new or empty directory, or an earlier export, which is replaced)")
flags.DEFINE_integer("seed", 0, "seeds initialisation and every episode stream")
flags.DEFINE_bool("tensorboard", True, "write TensorBoard summaries to <output_dir>/tensorboard")
flags.DEFINE_float("checkpoint_every_minutes", 3.0, "training minutes between checkpoints (also "
                   "at every validation, at the end, and on Ctrl-C/SIGTERM)")
flags.DEFINE_float("progress_every_seconds", 60.0, "seconds between progress log lines (the "
                   "first comes after the first meta-step)")
flags.DEFINE_enum("mixed_precision", "none", ["none", "bfloat16", "float16"],
                  "compute the task network in this precision (weights stay float32)")
flags.DEFINE_float("loss_scale", None, "static loss scale (default with float16: 1024 first "
                   "order, 32 second order; else 1)")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the meta-step (for GPUs; slow on CPU)")
flags.DEFINE_integer("steps_per_execution", 1, "meta-steps per compiled call")
flags.DEFINE_enum("cpu_threads", "auto", ["auto", "tasks", "ops", "default"],
                  "CPU threading: tasks run side by side (tasks) or ops use all cores (ops)")
flags.DEFINE_enum("distribution", "none", ["none", "mirrored", "multi_worker"],
                  "split meta-batches over devices (mirrored) or hosts in TF_CONFIG (multi_worker)")
flags.DEFINE_integer("cpu_replicas", None, "split the CPU into this many logical devices "
                     "(with --distribution=mirrored on a CPU-only host; for testing)")
flags.DEFINE_integer("verbose", 2, "Keras verbosity: 0 silent, 1 progress bar, 2 one line/epoch")


def config_from_flags():
    names = [f.name for f in __import__("dataclasses").fields(ExperimentConfig)]
    values = {name: FLAGS[name].value for name in names if name in FLAGS}
    if values.get("update_rules"):
        values["update_rules"] = tuple(values["update_rules"])
    return ExperimentConfig(**values)


def main(argv):
    del argv
    from wtl_tf.callbacks import Interrupted

    try:
        config = config_from_flags().resolved()
        from wtl_tf.runtime import configure_cpu_threads

        configure_cpu_threads(config.cpu_threads, config.meta_batch_size)
        from wtl_tf import experiment

        results, _ = experiment.run(config, flags_text=FLAGS.flags_into_string())
    except Interrupted as e:
        print(f"train.py: {e}", file=sys.stderr)
        sys.exit(128 + e.signal_number)
    except WtlError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        sys.exit(1)
    print(experiment.format_test_summary(results))
    logging.info("results written to %s", os.path.join(config.output_dir, "results.json"))


if __name__ == "__main__":
    app.run(main)
