"""Meta-iterations to reach a target validation accuracy: MAML against gradient sharing.

The measure of Chang & Lipson (2023), on the shared Omniglot archives (alphabet-level split,
5-way 1-shot, Conv4, one inner step, second order), across inner learning rates and seeds:

    python experiments/gradient_sharing.py --inner_lrs=0.1,0.4,1.0 --seeds=0,1 \
        --target=0.8 --max_iterations=800 --output=runs/gradient_sharing.json

Every run is checkpointed at each validation (<output>.runs/): rerunning a killed sweep
resumes the run in progress from there, with the same episodes and state (its curve and test
score equal an uninterrupted run's), and skips finished runs. To use both cores, split the
sweep (say --inner_lrs=0.4 --output=runs/a.json and --inner_lrs=1.0 --output=runs/b.json)
and join them with --merge=runs/a.json,runs/b.json.

Validation accuracy (fixed episodes) is measured every --eval_every meta-iterations; a run
that never reaches the target counts as censored at --max_iterations. Every run ends with
a meta-test on held-out alphabets (mean ± 95% CI). Prints a Markdown table.
"""

import json
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402

from benchmarks.hardware import hardware_line  # noqa: E402
from sharing_tables import pairs_table, table  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("inner_lrs", ["0.1", "0.4", "1.0"], "inner learning rates")
flags.DEFINE_list("seeds", ["0", "1"], "seeds")
flags.DEFINE_list("algorithms", ["maml", "grad_sharing"], "methods compared")
flags.DEFINE_float("target", 0.8, "target validation accuracy")
flags.DEFINE_integer("max_iterations", 800, "budget per run (censoring point)")
flags.DEFINE_integer("eval_every", 50, "meta-iterations between validations")
flags.DEFINE_integer("validation_tasks", 64, "fixed validation episodes")
flags.DEFINE_integer("test_tasks", 300, "held-out test episodes per run")
flags.DEFINE_integer("meta_batch_size", 8, "tasks per meta-update")
flags.DEFINE_string("data_dir", os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "..", "shared", "data", "omniglot"), "Omniglot archives")
flags.DEFINE_string("output", "runs/gradient_sharing.json", "results file")
flags.DEFINE_boolean("report_only", False, "print the tables of --output's finished runs and "
                     "run nothing")
flags.DEFINE_list("merge", [], "results files of sweeps run side by side (e.g. one per core): "
                  "their runs join --output's (a run already there is kept), then the tables "
                  "are printed; nothing is run")


def run_directory(algorithm, alpha, seed):
    """Where an unfinished run keeps its checkpoint and curve (removed when it finishes)."""
    return f"{FLAGS.output}.runs/{algorithm}-lr{alpha:g}-seed{seed}"


def one_run(tasks, algorithm, alpha, seed):
    """One run to the target; checkpointed at every validation, so a killed sweep resumes
    the run where it was (the same episodes and state from there on)."""
    import keras

    from wtl_tf import MetaLearner, models
    from wtl_tf.algorithms import build_update_rule, get_algorithm
    from wtl_tf.callbacks import NonFiniteLossGuard
    from wtl_tf.checkpoints import RunCheckpoints
    from wtl_tf.errors import NonFiniteLossError
    from wtl_tf.meta_test import meta_test
    from wtl_tf.run_directory import write_json_atomic

    keras.utils.set_random_seed(seed)
    spec = get_algorithm(algorithm)
    learner = MetaLearner(models.conv4(tasks.input_shape, 5),
                          build_update_rule(spec.links, inner_lr=alpha, inner_steps=1),
                          inner_steps=1, inner_steps_eval=1, first_order=False, seed=seed)
    learner.compile(optimizer=keras.optimizers.Adam(1e-3), meta_optimizer=keras.optimizers.Adam(1e-3))
    validation = tasks.episodes("validation", 32, num_batches=FLAGS.validation_tasks // 32)
    directory = run_directory(algorithm, alpha, seed)
    checkpoints = RunCheckpoints(directory, learner)
    resumed_at = checkpoints.restore()
    progress_path = os.path.join(directory, "progress.json")
    progress = {"curve": [], "reached": None, "diverged": False, "seconds": 0.0}
    if resumed_at and os.path.exists(progress_path):
        with open(progress_path) as f:
            progress = json.load(f)
        progress["curve"] = [p for p in progress["curve"] if p[0] <= resumed_at]
    started = time.perf_counter() - progress["seconds"]

    def save_progress():
        checkpoints.save()
        progress["seconds"] = round(time.perf_counter() - started, 1)
        write_json_atomic(progress_path, progress)

    class Target(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            iteration = int(self.model.optimizer.iterations.numpy())
            progress["curve"].append((iteration, float(logs["val_accuracy"])))
            if progress["reached"] is None and logs["val_accuracy"] >= FLAGS.target:
                progress["reached"] = iteration
                self.model.stop_training = True
            save_progress()

    done = (progress["reached"] is not None or progress["diverged"]
            or resumed_at >= FLAGS.max_iterations)
    if resumed_at:
        print(f"resuming {algorithm} lr {alpha:g} seed {seed} at meta-iteration {resumed_at}",
              flush=True)
    if not done:
        try:
            learner.fit(tasks.episodes("train", FLAGS.meta_batch_size,
                                       seed_offset(seed) + resumed_at),
                        steps_per_epoch=FLAGS.eval_every,
                        initial_epoch=resumed_at // FLAGS.eval_every,
                        epochs=FLAGS.max_iterations // FLAGS.eval_every,
                        validation_data=validation, verbose=0,
                        callbacks=[NonFiniteLossGuard(), Target()])
        except NonFiniteLossError:
            progress["diverged"] = True
            progress["seconds"] = round(time.perf_counter() - started, 1)
            write_json_atomic(progress_path, progress)  # (the checkpoint before it is kept)
    curve, reached, diverged = progress["curve"], progress["reached"], progress["diverged"]
    _, stats = meta_test(learner, tasks.episodes("test", 25), FLAGS.test_tasks)
    return {"algorithm": algorithm, "inner_lr": alpha, "seed": seed,
            "iterations_to_target": reached, "diverged": diverged,
            "seconds": round(time.perf_counter() - started, 1), "hardware": hardware_line(),
            "curve": curve,
            "test_accuracy": stats["accuracy"][0], "test_ci95": stats["accuracy"][1]}


def seed_offset(seed):
    return 0 if seed == 0 else seed * 100_000  # disjoint task streams per seed


def _key(run):
    return run["inner_lr"], run["seed"], run["algorithm"]


def _write(runs, protocol=None):
    """Writes --output atomically; `protocol` (default: this invocation's flags) records how
    the runs were made."""
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output + ".partial", "w") as f:
        json.dump({"flags": protocol or FLAGS.flag_values_dict(), "runs": runs}, f, indent=1)
    os.replace(FLAGS.output + ".partial", FLAGS.output)


def merged(runs, others):
    """`runs` plus the runs of `others` (lists of runs) that `runs` lacks, in order."""
    seen, out = {_key(r) for r in runs}, list(runs)
    for other in others:
        for run in other:
            if _key(run) not in seen:
                seen.add(_key(run))
                out.append(run)
    return out


def main(argv):
    del argv
    runs, protocol = [], None
    if os.path.exists(FLAGS.output):  # resume an interrupted sweep
        with open(FLAGS.output) as f:
            saved = json.load(f)
        runs, protocol = saved["runs"], saved.get("flags")
    if FLAGS.merge:
        others = []
        for path in FLAGS.merge:
            with open(path) as f:
                other = json.load(f)
            others.append(other["runs"])
            protocol = protocol or other.get("flags")
        runs = merged(runs, others)
        # the sweeps' protocol (not this call's defaults), over the rates and seeds joined
        protocol = dict(protocol or {}, merged_from=[os.path.basename(p) for p in FLAGS.merge],
                        inner_lrs=[f"{a:g}" for a in sorted({r["inner_lr"] for r in runs})],
                        seeds=[str(s) for s in sorted({r["seed"] for r in runs})])
        _write(runs, protocol)
    if FLAGS.report_only or FLAGS.merge:
        print(pairs_table(runs))
        print(table(runs, FLAGS.algorithms))
        return
    from wtl_tf.runtime import configure_cpu_threads

    configure_cpu_threads("auto", FLAGS.meta_batch_size)
    from wtl_tf.data.registry import task_distribution

    tasks = task_distribution("omniglot", ways=5, shots=1, queries=15, seed=0,
                              data_dir=FLAGS.data_dir, split="omniglot_small_alphabets")
    for alpha in map(float, FLAGS.inner_lrs):
        for seed in map(int, FLAGS.seeds):
            for algorithm in FLAGS.algorithms:
                if (alpha, seed, algorithm) in {_key(r) for r in runs}:
                    continue
                run = one_run(tasks, algorithm, alpha, seed)
                runs.append(run)
                print(json.dumps({k: v for k, v in run.items() if k != "curve"}), flush=True)
                _write(runs)
                shutil.rmtree(run_directory(algorithm, alpha, seed), ignore_errors=True)
                if not os.listdir(FLAGS.output + ".runs"):
                    os.rmdir(FLAGS.output + ".runs")
    print(pairs_table(runs))
    print(table(runs, FLAGS.algorithms))


if __name__ == "__main__":
    app.run(main)
