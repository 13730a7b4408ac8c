"""Continual meta-learning (docs/continual.md): task streams, replay buffers, metrics and the
La-MAML family of learners, each driven one incoming batch at a time (`observe`).

    stream = streams.rotated_omniglot(class_images, tasks=20, seed=0)
    learner = LaMAML(models.mlp(784, (100, 100), 20), **algorithms.learner_options("la_maml"))
    for task in stream.tasks:
        for x, y in stream.train_batches(task, batch_size=10):
            learner.observe(x, y, task.index)
        accuracies.record(...)

The learners keep their state (weights, learned rates or masks, replay buffer) in
checkpointable objects, so a run can stop anywhere and resume bit for bit.
"""
