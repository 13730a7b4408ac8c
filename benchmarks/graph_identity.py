"""Do two checkouts trace the same compiled meta-step? Node by node, in one run.

    python benchmarks/graph_identity.py --old=/path/to/old/checkout --new=. \
        [--configs=omniglot,sparse_maml_mini]

For each `benchmarks/meta_step.py` configuration, each tree (a fresh process) builds the
learner and traces its `train_step`; printed are the number of graph nodes, of library
functions and of their nodes, and a SHA-256 over every node's name, op and inputs. The same
hash means the same computation in the same order: a speed difference between the trees is
then the machine's, not the change's (this VM's speed drifts more than 5% between runs).
"""

import argparse
import os
import subprocess
import sys

_TRACE = r'''
import hashlib, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, os.getcwd())
import keras, tensorflow as tf
from benchmarks.meta_step import CONFIGS, synthetic_episodes
from wtl_tf import MetaLearner, algorithms, models
from wtl_tf.optimizers import make_optimizer
spec = CONFIGS[sys.argv[1]]
keras.utils.set_random_seed(0)
rule = algorithms.build_update_rule(algorithms.get_algorithm(spec["algorithm"]).links,
                                    inner_lr=spec["alpha"])
learner = MetaLearner(models.conv4(spec["image"], spec["ways"]), rule,
                      inner_steps=spec["steps"], first_order=spec["order"] == "first",
                      parallel_tasks=2)
learner.compile(optimizer=make_optimizer("adam", 1e-3), meta_optimizer=make_optimizer("adam", 1e-3))
graph = tf.function(learner.train_step).get_concrete_function(
    synthetic_episodes(spec)).graph.as_graph_def()
nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
digest = hashlib.sha256("\n".join(f"{n.name} {n.op} {list(n.input)}" for n in nodes)
                        .encode()).hexdigest()
print(len(graph.node), len(graph.library.function), len(nodes) - len(graph.node), digest)
'''


def trace(tree, config):
    proc = subprocess.run([sys.executable, "-c", _TRACE, config], cwd=tree, text=True,
                          capture_output=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if proc.returncode:
        raise SystemExit(f"{tree}: tracing {config} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout.split()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", default=".")
    parser.add_argument("--configs", default="omniglot,sparse_maml_mini")
    args = parser.parse_args()
    differences = 0
    for config in args.configs.split(","):
        old, new = (trace(os.path.abspath(tree), config) for tree in (args.old, args.new))
        same = old == new
        differences += not same
        print(f"{config}: old {old[0]} nodes, {old[1]} functions of {old[2]} nodes, "
              f"{old[3][:16]}; new {new[0]}, {new[1]} of {new[2]}, {new[3][:16]}: "
              f"{'same' if same else 'DIFFERENT'}", flush=True)
    print(f"differences={differences}")


if __name__ == "__main__":
    main()
