"""Keras layers the task networks need beyond the built-in ones."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="wtl_tf")
class Conv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D whose bias is a broadcast addition (AddV2) instead of a BiasAdd op.

    Why: second-order meta-gradients through a BiasAdd conv crash on CPUs where TensorFlow's
    oneDNN graph rewrite is on (by default on CPUs with AVX512-VNNI/BF16 or AMX, off on AVX2
    ones) with "InvalidArgumentError: N nodes in a cycle". That rewrite (MklLayoutRewritePass)
    merges every BiasAddGrad with *a* Conv2DBackpropFilter that reads the same output gradient
    G. In a second-order graph G has two such readers: the inner step's filter gradient, and
    the outer pass's gradient of the inner Conv2DBackpropInput with respect to the filter,
    which itself depends on the bias gradient through the inner update. The rewrite takes
    whichever it meets first in a pointer-keyed edge set, so the choice changes from process
    to process; picking the outer one closes a cycle. The gradient of a broadcast addition is
    a Sum, not a BiasAddGrad, so there is nothing to merge. Same weights, same results.
    """

    def call(self, inputs):
        outputs = self.convolution_op(inputs, self.kernel)
        if self.use_bias:
            if self.data_format == "channels_last":
                shape = (1,) * (self.rank + 1) + (self.filters,)
            else:
                shape = (1, self.filters) + (1,) * self.rank
            # tf.math.add, not keras.ops.add: Keras turns a bias-shaped addition into BiasAdd.
            outputs = tf.math.add(outputs, tf.reshape(tf.cast(self.bias, outputs.dtype), shape))
        if self.activation is not None:
            return self.activation(outputs)
        return outputs


@keras.saving.register_keras_serializable(package="wtl_tf")
class BatchNorm(keras.layers.Layer):
    """Batch normalisation that normalises with the statistics of the batch it is given.

    MAML-style learners never use running averages: with `training=True` the layer
    normalises with the current batch statistics and stores them in its (non-trainable)
    `mean`/`variance`; with `training=False` it normalises with the stored statistics. A
    learner that runs the support set with training=True and the query set with
    training=False therefore normalises the query with support statistics only
    (non-transductive); running both with training=True is the reference (transductive).

    float32 uses the fused kernel (one op forward and backward, second-order gradients defined
    by TensorFlow), and so do bfloat16/float16 inputs after a cast to float32; float64 uses
    the textbook formula.
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")
        self.mean = self.add_weight(shape=(channels,), initializer="zeros", name="mean",
                                    trainable=False)
        self.variance = self.add_weight(shape=(channels,), initializer="ones", name="variance",
                                        trainable=False)

    def call(self, x, training=False):
        shape, compute_dtype = tf.shape(x), x.dtype
        if x.shape.rank != 4:  # the fused kernel wants NHWC
            x = tf.reshape(x, [-1, 1, 1, x.shape[-1]])
        if compute_dtype in (tf.float16, tf.bfloat16):
            # Statistics and their gradients are reductions over the whole batch: in half
            # precision they lose most of their digits (measured: 10-70% error in the first
            # conv layer's gradient), so mixed-precision networks normalise in float32.
            x = tf.cast(x, tf.float32)
        gamma = tf.cast(self.gamma, self.variable_dtype)
        beta = tf.cast(self.beta, self.variable_dtype)
        if training:
            y, mean, variance = self._normalize_with_batch_statistics(x, gamma, beta)
            self.mean.assign(tf.cast(mean, self.mean.dtype))
            self.variance.assign(tf.cast(variance, self.variance.dtype))
        else:
            y = self._normalize(x, self.mean, self.variance, gamma, beta)
        return tf.reshape(tf.cast(y, compute_dtype), shape)

    def _normalize_with_batch_statistics(self, x, gamma, beta):
        if x.dtype == tf.float64:
            # Not tf.nn.moments: it stops the gradient through the mean inside the variance,
            # which is harmless to first order but makes second-order gradients wrong.
            mean = tf.reduce_mean(x, axis=[0, 1, 2])
            variance = tf.reduce_mean(tf.square(x - mean), axis=[0, 1, 2])
            return self._normalize(x, mean, variance, gamma, beta), mean, variance
        y, mean, bessel_variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, epsilon=self.epsilon, is_training=True)
        # The fused op returns the Bessel-corrected variance; normalisation used the biased one.
        n = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), bessel_variance.dtype)
        return y, mean, bessel_variance * (n - 1.0) / tf.maximum(n, 1.0)

    def _normalize(self, x, mean, variance, gamma, beta):
        if x.dtype == tf.float64:
            scale = gamma * tf.math.rsqrt(tf.cast(variance, x.dtype) + self.epsilon)
            return x * scale + (beta - tf.cast(mean, x.dtype) * scale)
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, mean=tf.cast(mean, tf.float32), variance=tf.cast(variance, tf.float32),
            epsilon=self.epsilon, is_training=False)
        return y

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
