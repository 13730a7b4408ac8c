"""A small version of the README's Omniglot result: sparse-MAML really learns on real data
(Conv4 with 32 channels for the time budget; measured on the AMD EPYC (AVX2): 0.710 +- 0.019
after 150 meta-iterations against 0.501 +- 0.023 untrained, seed 0, chance 0.2).

The training runs in a child process (python tests/test_omniglot_learning.py OMNIGLOT_DIR
OUT.json) driven from the background thread (tests/background.py), so the rest of the suite
goes on meanwhile; the test checks the scores it writes."""

import json
import os
import subprocess
import sys

import numpy as np

import background


def learn(omniglot_dir):
    import keras

    from wtl_tf import MetaLearner, models
    from wtl_tf.algorithms import build_update_rule, get_algorithm
    from wtl_tf.data.registry import task_distribution
    from wtl_tf.meta_test import meta_test

    keras.utils.set_random_seed(0)  # a fresh process: the same initialisation every run
    tasks = task_distribution("omniglot", ways=5, shots=1, queries=15, seed=0,
                              data_dir=omniglot_dir, split="omniglot_small_alphabets")
    algorithm = get_algorithm("sparse_maml")
    learner = MetaLearner(models.conv4(tasks.input_shape, 5, channels=32),
                          build_update_rule(algorithm.links, inner_lr=0.4),
                          inner_steps=1, inner_steps_eval=3,
                          first_order=algorithm.first_order)  # the reference: first order
    learner.compile(optimizer=keras.optimizers.Adam(1e-3),
                    meta_optimizer=keras.optimizers.Adam(1e-3))
    held_out = tasks.episodes("test", 25, num_batches=4)  # Korean + Tagalog, 100 tasks
    _, untrained = meta_test(learner, held_out, 100)
    learner.fit(tasks.episodes("train", 4), steps_per_epoch=150, epochs=1, verbose=0)
    per_task, trained = meta_test(learner, held_out, 100)
    return {"untrained": list(untrained["accuracy"]), "trained": list(trained["accuracy"]),
            "adaptation_helps": float(np.mean(per_task["accuracy"] > per_task["pre_accuracy"]))}


@background.test()
def test_sparse_maml_learns_5_way_1_shot_on_held_out_alphabets(tmp_path, omniglot_dir):
    out = tmp_path / "scores.json"
    proc = background.popen([sys.executable, os.path.abspath(__file__), omniglot_dir, str(out)],
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, error = proc.communicate(timeout=1200)
    assert proc.returncode == 0, error[-3000:]
    scores = json.loads(out.read_text())
    print(f"untrained {scores['untrained']}, trained {scores['trained']}")

    accuracy, ci = scores["trained"]
    assert accuracy - ci > 0.45, scores  # chance is 0.2
    assert accuracy - ci > sum(scores["untrained"]) + 0.1
    assert scores["adaptation_helps"] > 0.8  # on most tasks adaptation raises the accuracy


if __name__ == "__main__":  # the child: OMNIGLOT_DIR OUT
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = learn(sys.argv[1])
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
