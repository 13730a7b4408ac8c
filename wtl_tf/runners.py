"""How the tasks of a meta-batch run: one interface, three runners.

    runner.meta_gradients(inner, episodes, params, stream) -> ({path: summed gradient}, logs)
    runner.evaluate(inner, episodes, params, steps)         -> {metric: [B] per task}

`TaskLoop` runs the tasks in a `tf.while_loop` (each task's outer gradient inside the body,
so one task's activations are alive per parallel iteration, and independent tasks run
concurrently on the CPU's inter-op threads); `VectorizedTasks` batches the per-task
computation with `tf.vectorized_map` (small networks); `LockstepTasks` adapts all tasks
together, step by step, for update rules that couple the tasks of a meta-batch
(`UpdateRule.couples_tasks`, gradient sharing). `runner_for` picks one.
"""

import tensorflow as tf

from wtl_tf.errors import ConfigError
from wtl_tf.inner_loop import (Adaptation, Params, metric_or_zero, stream_seed,
                               value_and_gradient)

EPISODE_KEYS = ("support_x", "support_y", "query_x", "query_y")


def episode(episodes, i):
    """Task `i` of a meta-batch of episodes."""
    return {k: tf.convert_to_tensor(episodes[k])[i] for k in EPISODE_KEYS}


def meta_batch_size(episodes):
    """The number of tasks: static when the dataset was batched with drop_remainder (one
    trace per run); dynamic under MultiWorkerMirroredStrategy, which drops it."""
    size = episodes["support_x"].shape[0]
    return size if size is not None else tf.shape(episodes["support_x"])[0]


def episode_seed(seed, support_x):
    """The draw key of an evaluation task: a pure function of (seed, its support set).

    Stochastic rules (sparse-MAML+'s noise) draw per task at evaluation too: the same
    episode always gets the same draw, different episodes independent ones, whatever their
    position in an evaluation batch or a SavedModel call. The key hashes the support
    tensor's bytes, so it is the same only for bit-identical inputs."""
    serialized = tf.reshape(tf.io.serialize_tensor(tf.convert_to_tensor(support_x)), [1])
    fingerprint = tf.bitcast(tf.fingerprint(serialized)[0], tf.int64)
    return tf.stack([tf.constant(seed, tf.int64), fingerprint])


def local_copies(params):
    # Inside a loop body the gradient must be taken with respect to tensors of the body's
    # own graph, not the captured outer ones.
    return Params(*[{p: tf.identity(t) for p, t in group.items()} for group in params])


def _outer_reduction(grads, size, reduction):
    if reduction == "sum":
        return grads
    # "mean": over the whole meta-batch, across replicas
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return {p: g / tf.cast(size * replicas, g.dtype) for p, g in grads.items()}


class TaskLoop:
    """Independent tasks in a tf.while_loop."""

    def __init__(self, parallel_tasks=2, outer_reduction="sum"):
        self.parallel_tasks, self.outer_reduction = max(1, int(parallel_tasks)), outer_reduction

    def parallel_iterations(self):
        # Under a multi-replica strategy the replicas already run side by side, and
        # overlapping loop iterations there can make TensorFlow build a graph with a cycle
        # (seen with masked BatchNorm parameters on MirroredStrategy, TF 2.21).
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            return 1
        return self.parallel_tasks

    def task_gradients(self, inner, task, seed, params):
        """(query loss, accuracy, first support loss, {path: outer gradient}) of one task."""
        params = local_copies(params)

        def query_loss():
            adaptation = inner.adapt(params, task["support_x"], task["support_y"],
                                     task_seed=seed)
            outputs = inner.predict_adapted(adaptation, task["query_x"])
            return inner.loss_fn(task["query_y"], outputs), outputs, adaptation

        (loss, outputs, adaptation), grads = value_and_gradient(
            query_loss, inner.gradient_sources(params), inner.loss_scale)
        accuracy = metric_or_zero(inner.is_classifier, task["query_y"], outputs)
        losses = adaptation.support_losses  # a list if unrolled, a tensor from a loop
        support_loss = (losses[0] if tf.is_tensor(losses) or losses else loss)
        return loss, accuracy, support_loss, grads

    def meta_gradients(self, inner, episodes, params, stream):
        size, zero = meta_batch_size(episodes), tf.zeros((), tf.float32)
        sources = inner.gradient_sources(params)

        def body(i, loss_sum, acc_sum, support_sum, grad_sums):
            loss, acc, support_loss, grads = self.task_gradients(
                inner, episode(episodes, i), stream_seed(inner.seed, stream, i), params)
            grad_sums = {p: s + tf.cast(grads[p], s.dtype) for p, s in grad_sums.items()}
            return (i + 1, loss_sum + tf.cast(loss, zero.dtype), acc_sum + tf.cast(acc, zero.dtype),
                    support_sum + tf.cast(support_loss, zero.dtype), grad_sums)

        init = (tf.constant(0), zero, zero, zero,
                {p: tf.zeros(t.shape, t.dtype) for p, t in sources.items()})
        _, loss_sum, acc_sum, support_sum, grad_sums = tf.while_loop(
            lambda i, *_: i < size, body, init, parallel_iterations=self.parallel_iterations())
        count = tf.cast(size, tf.float32)
        return _outer_reduction(grad_sums, size, self.outer_reduction), {
            "loss": loss_sum / count, "accuracy": acc_sum / count,
            "support_loss": support_sum / count}

    def evaluate(self, inner, episodes, params, steps):
        """Per-task pre- and post-adaptation query loss/accuracy (vectors of length B)."""
        return self._evaluate(inner, episodes, lambda task, i: inner.adapt(
            params, task["support_x"], task["support_y"], steps=steps, first_order=True,
            task_seed=episode_seed(inner.seed, task["support_x"]), evaluation=True))

    def _evaluate(self, inner, episodes, adapt_task):
        """Pre/post metrics per task; `adapt_task(task, i)` gives task i's Adaptation."""
        out_dtype = tf.float64 if inner.dtype == tf.float64 else tf.float32

        def one_task(i):
            task = episode(episodes, i)
            adaptation = adapt_task(task, i)
            pre = inner.predict_with(adaptation.initial_params, adaptation, task["query_x"])
            post = inner.predict_adapted(adaptation, task["query_x"])
            values = [inner.loss_fn(task["query_y"], pre), inner.loss_fn(task["query_y"], post)]
            if inner.is_classifier:
                values += [metric_or_zero(True, task["query_y"], pre),
                           metric_or_zero(True, task["query_y"], post)]
            return tf.stack([tf.cast(v, out_dtype) for v in values])

        per_task = tf.map_fn(one_task, tf.range(meta_batch_size(episodes)),
                             fn_output_signature=out_dtype,
                             parallel_iterations=self.parallel_iterations())
        names = ["pre_loss", "loss"] + (["pre_accuracy", "accuracy"] if inner.is_classifier
                                        else [])
        return {name: per_task[:, j] for j, name in enumerate(names)}


class VectorizedTasks(TaskLoop):
    """The tasks' meta-gradients in one tf.vectorized_map (one batched op per op of the
    per-task computation): much faster for small networks whose ops cannot keep a CPU busy.
    Convolutions with per-task weights do not batch; evaluation loops as TaskLoop does."""

    def meta_gradients(self, inner, episodes, params, stream):
        size = meta_batch_size(episodes)

        def one_task(elems):
            task, i = elems
            return self.task_gradients(inner, task, stream_seed(inner.seed, stream, i), params)

        episodes = {k: tf.convert_to_tensor(episodes[k]) for k in EPISODE_KEYS}
        try:
            losses, accs, support_losses, grads = tf.vectorized_map(
                one_task, (episodes, tf.range(size)), fallback_to_while_loop=False)
        except ValueError as e:  # an op without a vectorised form
            raise ConfigError(f"vectorize_tasks: this task network or update rule has an op that "
                              f"tf.vectorized_map cannot batch ({str(e).splitlines()[0][:200]}); "
                              "turn it off (--novectorize_tasks)") from e
        grad_sums = _outer_reduction({p: tf.reduce_sum(g, axis=0) for p, g in grads.items()},
                                     size, self.outer_reduction)
        mean = lambda x: tf.reduce_mean(tf.cast(x, tf.float32))  # noqa: E731
        return grad_sums, {"loss": mean(losses), "accuracy": mean(accs),
                           "support_loss": mean(support_losses)}


class LockstepTasks(TaskLoop):
    """All tasks adapt together, step by step, so a coupled rule sees every task's gradient
    of the same step ([B, ...] tensors). Logs also carry `step_means`, the raw batch-mean
    inner gradient of every step, for rules that keep statistics (`UpdateRule.observe`)."""

    def __init__(self, parallel_tasks=2, outer_reduction="sum", concurrent_at_eval=False):
        super().__init__(parallel_tasks, outer_reduction)
        self.concurrent_at_eval = bool(concurrent_at_eval)

    def adapt_together(self, inner, episodes, params, steps, first_order, seed=None,
                       evaluation=False):
        """(per-task adapted trees [B, ...], phi_0 tree, step means, per-step support losses)."""
        size = meta_batch_size(episodes)
        theta, state = params.theta, params.state
        with inner.rule_values(params):
            rule, initial = inner.begin(params, seed, evaluation)
            initial_params = {**theta, **initial}
            adapted = {p: tf.repeat(t[None], size, axis=0) for p, t in initial.items()}
            loss_dtype = inner.dtype
            paths = inner.adapted_paths
            step_means, support_losses = [], []
            for step in range(steps):
                def task_gradient(i, adapted=adapted):
                    fast = {p: adapted[p][i] for p in paths}

                    def support_loss():
                        outputs, _ = inner.forward({**theta, **fast}, state,
                                                   episodes["support_x"][i], True)
                        return inner.loss_fn(episodes["support_y"][i], outputs)

                    loss, grads = value_and_gradient(support_loss, fast, inner.loss_scale)
                    return [grads[p] for p in paths], tf.cast(loss, loss_dtype)

                grads, losses = tf.map_fn(
                    task_gradient, tf.range(size), parallel_iterations=self.parallel_iterations(),
                    fn_output_signature=([tf.TensorSpec(adapted[p].shape[1:], adapted[p].dtype)
                                          for p in paths], tf.TensorSpec([], loss_dtype)))
                if first_order:
                    grads = [tf.stop_gradient(g) for g in grads]
                step_means.append({p: tf.reduce_mean(tf.stop_gradient(g), axis=0)
                                   for p, g in zip(paths, grads)})
                updates = rule.transform(dict(zip(paths, grads)), adapted, step)
                adapted = rule.project({p: adapted[p] - updates[p] for p in paths})
                support_losses.append(losses)
        return adapted, initial_params, step_means, support_losses

    def meta_gradients(self, inner, episodes, params, stream):
        size = meta_batch_size(episodes)
        theta, state = params.theta, params.state

        def total_query_loss():
            adapted, initial_params, step_means, support_losses = self.adapt_together(
                inner, episodes, params, inner.inner_steps, inner.first_order,
                stream_seed(inner.seed, stream, 0))

            def query(i):
                fast = {**theta, **{p: t[i] for p, t in adapted.items()}}
                adaptation = Adaptation(fast, initial_params, state, episodes["support_x"][i], [])
                outputs = inner.predict_adapted(adaptation, episodes["query_x"][i])
                accuracy = metric_or_zero(inner.is_classifier, episodes["query_y"][i], outputs)
                return tf.stack([inner.loss_fn(episodes["query_y"][i], outputs), accuracy])

            dtype = next(iter(adapted.values())).dtype
            per_task = tf.map_fn(query, tf.range(size),
                                 parallel_iterations=self.parallel_iterations(),
                                 fn_output_signature=tf.TensorSpec([2], dtype))
            return tf.reduce_sum(per_task[:, 0]), per_task, step_means, support_losses

        (total, per_task, step_means, support_losses), grads = value_and_gradient(
            total_query_loss, inner.gradient_sources(params), inner.loss_scale)
        grads = _outer_reduction(grads, size, self.outer_reduction)
        support = support_losses[0] if support_losses else per_task[:, 0]
        return grads, {"loss": tf.cast(total, tf.float32) / tf.cast(size, tf.float32),
                       "objective": total,
                       "accuracy": tf.cast(tf.reduce_mean(per_task[:, 1]), tf.float32),
                       "support_loss": tf.cast(tf.reduce_mean(support), tf.float32),
                       "step_means": step_means}

    def evaluate(self, inner, episodes, params, steps):
        if not self.concurrent_at_eval:  # each task alone, as one new task would be
            return super().evaluate(inner, episodes, params, steps)
        adapted, initial_params, _, _ = self.adapt_together(
            inner, episodes, params, steps, True, episode_seed(inner.seed, episodes["support_x"]),
            evaluation=True)

        def adapt_task(task, i):
            fast = {**params.theta, **{p: t[i] for p, t in adapted.items()}}
            return Adaptation(fast, initial_params, params.state, task["support_x"], [])

        return self._evaluate(inner, episodes, adapt_task)


def runner_for(update_rule, vectorize_tasks=False, parallel_tasks=2, outer_reduction="sum"):
    """The runner an update rule needs: lock-step for rules that couple tasks."""
    if update_rule.couples_tasks:
        if vectorize_tasks:
            raise ConfigError("vectorize_tasks does not apply to an update rule that couples the "
                              "tasks of a meta-batch (gradient sharing): drop it")
        return LockstepTasks(parallel_tasks, outer_reduction, update_rule.concurrent_at_eval)
    if vectorize_tasks:
        return VectorizedTasks(parallel_tasks, outer_reduction)
    return TaskLoop(parallel_tasks, outer_reduction)
