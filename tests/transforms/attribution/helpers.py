"""Models and reference computations shared by the attribution method tests (not a test module).

Small models with known answers (functions of the flattened pixels, linear and power models) and
a small tanh CNN; PAIR's `call_model_function` for the comparisons with the `saliency` package.
"""
import numpy as np
import tensorflow as tf

SHAPE = (8, 8, 3)


def flat_model(fn):
    """A model from a function of the flattened pixels (N, D) -> (N, K)."""
    def model(x):
        return fn(tf.reshape(x, (tf.shape(x)[0], -1)))
    return model


def power_model(a: np.ndarray, power: int):
    """f(x) = sum_i a_i x_i^power as a one-logit model."""
    at = tf.constant(a.reshape(1, -1), tf.float32)
    return flat_model(lambda f: tf.reduce_sum(at * f ** power, axis=1, keepdims=True))


def linear_model(w: np.ndarray):
    """Two logits: w . x and 0."""
    wt = tf.constant(w.reshape(1, -1), tf.float32)
    return flat_model(lambda f: tf.stack([tf.reduce_sum(f * wt, axis=1), tf.zeros(tf.shape(f)[0])], axis=1))


def small_cnn(seed=0, classes=3, shape=SHAPE, activation="tanh", stddev=3.0):
    import keras
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input(shape),
        keras.layers.Conv2D(8, 3, activation=activation, name="conv1",
                            kernel_initializer=keras.initializers.RandomNormal(stddev=1.0),
                            bias_initializer=keras.initializers.RandomNormal(stddev=0.1)),
        keras.layers.Conv2D(8, 3, activation=activation, name="conv2"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(classes, kernel_initializer=keras.initializers.RandomNormal(stddev=stddev)),
    ])


def rel_gap(r):
    return np.abs(r.completeness_gap) / np.abs(r.score_input - r.score_baseline)


def pair_gradients(model, target):
    """PAIR's call_model_function: gradients of the softmax probability of `target`."""
    from saliency.core import base as saliency_base

    def call(x_batch, call_model_args=None, expected_keys=None):
        x = tf.constant(np.asarray(x_batch, np.float32))
        with tf.GradientTape() as tape:
            tape.watch(x)
            p = tf.nn.softmax(model(x), axis=-1)[:, target]
        return {saliency_base.INPUT_OUTPUT_GRADIENTS: tape.gradient(p, x).numpy()}
    return call


# -- the engine and chunk size tests' model --------------------------------------------------------
SHAPE12 = (12, 12, 3)
CLASSES12 = 7


def cnn12(seed=0):
    import keras
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input(SHAPE12),
        keras.layers.Conv2D(6, 3, activation="relu"),
        keras.layers.Conv2D(6, 3, activation="tanh"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(CLASSES12, kernel_initializer=keras.initializers.RandomNormal(stddev=2.0)),
    ])


def images12(n, seed):
    return np.random.default_rng(seed).uniform(size=(n,) + SHAPE12).astype(np.float32)
