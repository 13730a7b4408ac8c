"""How the initialisation and the meta-parameters move: outer-loop strategies.

A strategy is what `MetaLearner.train_step` calls: `train_step(learner, episodes) -> logs`.
`MetaGradientUpdate` (the MAML family) follows the meta-gradient through the inner loop,
with one optimiser for theta and one for the meta-parameters; `wtl_tf.warpgrad.LeapUpdate`
(Leap / Warp-Leap) replays stored trajectories instead.
"""


def gradients_of(variables, grads):
    """The entries of a {path: gradient} tree for `variables`, in their order."""
    return [grads[v.path] for v in variables]


class MetaGradientUpdate:
    """theta and the meta-parameters take one optimiser step along the meta-gradient."""

    updates_meta_parameters = False  # the learner's meta-optimiser does, in this step
    extra_metrics = ()

    def train_step(self, learner, episodes):
        grads, logs = learner.meta_gradients(episodes)
        learner.optimizer.apply(gradients_of(learner.initialization_variables, grads),
                                learner.initialization_variables)
        if learner.meta_optimizer is not None:
            learner.meta_optimizer.apply(gradients_of(learner.meta_variables, grads),
                                         learner.meta_variables)
        if "step_means" in logs:  # statistics kept by the rule across meta-iterations
            learner.update_rule.observe(logs["step_means"])
        return logs
