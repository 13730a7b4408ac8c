"""Continual meta-learning (docs/continual.md): task streams, replay memories, metrics and
the learners, Keras models that learn a stream one incoming batch per `train_step`.

    stream = streams.rotated_omniglot(class_images, tasks=20, seed=0)
    learner = LaMAML(models.mlp(784, (100, 100), 20), **algorithms.learner_options("la_maml"))
    learner.compile()
    learner.fit(learner.stream_dataset(stream, batch_size=10), callbacks=[AccuracyMatrix(...)])

The learners keep their state (weights, learned rates or masks, replay memory) in
checkpointable objects, so a run can stop anywhere and resume bit for bit.
"""
