"""An independent, deliberately plain MAML-family implementation used as a test oracle.

It shares no code with wtl_tf: an MLP written with raw TensorFlow ops on explicit weight
lists, and the inner-loop update rules written out by hand.
"""

import tensorflow as tf


def mlp_forward(params, x):
    """params = [W1, b1, W2, b2, ...]; ReLU between layers, linear output."""
    h = x
    n_layers = len(params) // 2
    for i in range(n_layers):
        h = tf.matmul(h, params[2 * i]) + params[2 * i + 1]
        if i < n_layers - 1:
            h = tf.nn.relu(h)
    return h


def mse(pred, target):
    return tf.reduce_mean(tf.square(pred - target))


def adapt(theta, support_x, support_y, steps, factors, stop_inner=False, record=None):
    """phi_{k+1} = phi_k - factors * grad; `factors` are per-tensor multipliers of g."""
    phi = list(theta)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(phi)
            loss = mse(mlp_forward(phi, support_x), support_y)
        grads = tape.gradient(loss, phi)
        if stop_inner:
            grads = [tf.stop_gradient(g) for g in grads]
        if record is not None:
            record.append(grads)
        phi = [p - f * g for p, f, g in zip(phi, factors, grads)]
    return phi


def meta_loss(theta, episodes, steps, factors, stop_inner=False):
    """Sum over tasks of the query loss after adaptation."""
    total = 0.0
    for t in range(episodes["support_x"].shape[0]):
        phi = adapt(theta, episodes["support_x"][t], episodes["support_y"][t], steps, factors,
                    stop_inner)
        total += mse(mlp_forward(phi, episodes["query_x"][t]), episodes["query_y"][t])
    return total


def meta_gradients(theta, episodes, steps, factor_fn, meta, stop_inner=False):
    """d meta_loss / d (theta, meta), where factors = factor_fn(meta)."""
    theta = [tf.constant(t) for t in theta]
    meta = [tf.constant(m) for m in meta]
    with tf.GradientTape() as tape:
        tape.watch(theta + meta)
        loss = meta_loss(theta, episodes, steps, factor_fn(meta), stop_inner)
    grads = tape.gradient(loss, theta + meta, unconnected_gradients="zero")
    return loss, grads[:len(theta)], grads[len(theta):]
