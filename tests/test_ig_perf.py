"""The IG engine's speed mechanisms, tested as mechanisms (no timings are asserted):
one trace per model whatever the batch, targets and step counts; `chunk_size="auto"`
picks one of its candidates and stays inside the memory budget."""
import numpy as np
import pytest
import tensorflow as tf

from transforms.ig import IGEngine, choose_chunk_size, estimate_sample_bytes, quadrature

SHAPE = (12, 12, 3)
CLASSES = 7


def cnn(seed=0):
    import keras
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input(SHAPE),
        keras.layers.Conv2D(6, 3, activation="relu"),
        keras.layers.Conv2D(6, 3, activation="tanh"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(CLASSES, kernel_initializer=keras.initializers.RandomNormal(stddev=2.0)),
    ])


@pytest.fixture(scope="module")
def model():
    return cnn()


def images(n, seed):
    return np.random.default_rng(seed).uniform(size=(n,) + SHAPE).astype(np.float32)


def test_one_trace_across_ragged_batches_many_targets_and_step_counts(model):
    engine = IGEngine(model, SHAPE, rule="trapezoid", steps=10, chunk_size=8)
    calls = [  # (batch size, steps, rule): ragged, and never a multiple of the chunk
        (1, None, None), (5, None, None), (3, 4, None), (7, 33, None), (2, 9, "gauss_legendre"),
        (4, 6, "riemann_middle"), (6, None, None)]
    seen_targets = set()
    for i, (n, steps, rule) in enumerate(calls):
        x = images(n, i)
        targets = (np.arange(n) + i) % CLASSES  # every class comes up as a target
        seen_targets.update(targets.tolist())
        r = engine.attribute(x, np.zeros_like(x), targets=targets, steps=steps, rule=rule)
        assert r.attributions.shape == (n,) + SHAPE
        expected_samples = len(quadrature(rule or "trapezoid", steps or 10)[0])
        assert r.gradient_samples == expected_samples
        np.testing.assert_array_equal(r.targets, targets)
    assert seen_targets == set(range(CLASSES))
    assert engine.trace_count == 1
    assert engine.forward_trace_count == 1


def test_per_call_steps_give_the_same_attributions_as_an_engine_built_with_them(model):
    x = images(3, 10)
    per_call = IGEngine(model, SHAPE, steps=10, chunk_size=8).attribute(
        x, np.zeros_like(x), steps=16, rule="gauss_legendre")
    built = IGEngine(model, SHAPE, steps=16, rule="gauss_legendre", chunk_size=8).attribute(x, np.zeros_like(x))
    np.testing.assert_allclose(per_call.attributions, built.attributions, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(per_call.completeness_gap, built.completeness_gap, atol=1e-6)


def test_auto_chunk_picks_a_candidate_and_reuses_its_trace(model):
    candidates = (4, 8, 16)
    engine = IGEngine(model, SHAPE, steps=6, chunk_size="auto", chunk_candidates=candidates)
    assert engine.chunk_size in candidates
    assert engine.chunk_timings and set(engine.chunk_timings) <= set(candidates)
    assert engine.chunk_size in engine.chunk_timings
    assert all(rate > 0 for rate in engine.chunk_timings.values())
    assert engine.trace_count == 1  # the winner's probe trace is the engine's function
    x = images(5, 3)
    auto = engine.attribute(x, np.zeros_like(x), targets=np.arange(5) % CLASSES)
    fixed = IGEngine(model, SHAPE, steps=6, chunk_size=5).attribute(x, np.zeros_like(x),
                                                                    targets=np.arange(5) % CLASSES)
    np.testing.assert_allclose(auto.attributions, fixed.attributions, rtol=1e-5, atol=1e-7)
    assert engine.trace_count == 1


@pytest.mark.parametrize("per_call, expected", [(40, {4: 40, 8: 40, 16: 40}), (20, {4: 20, 8: 20, 16: 32})])
def test_auto_chunk_times_calls_of_the_real_size(model, monkeypatch, per_call, expected):
    """With samples_per_call, each candidate is timed on calls of that many samples (its padding
    and chunk overlap measured), or on two full chunks when the call is smaller than that."""
    probed, chunk_of = {}, {}
    original = IGEngine._run

    def run(self, function, image, baseline, target, alphas, weights):
        probed.setdefault(chunk_of[id(function)], set()).add(int(alphas.shape[0]))
        return original(self, function, image, baseline, target, alphas, weights)

    original_build = IGEngine._build_integrate

    def build(self, chunk):
        function = original_build(self, chunk)
        chunk_of[id(function)] = chunk
        return function

    monkeypatch.setattr(IGEngine, "_run", run)
    monkeypatch.setattr(IGEngine, "_build_integrate", build)
    engine = IGEngine(model, SHAPE, steps=6, chunk_size="auto", chunk_candidates=(4, 8, 16),
                      samples_per_call=per_call)
    assert {c: probed[c] for c in engine.chunk_timings} == {c: {expected[c]} for c in engine.chunk_timings}


def test_a_tiny_memory_budget_forces_the_smallest_candidate(model):
    engine = IGEngine(model, SHAPE, steps=4, chunk_size="auto", chunk_candidates=(16, 4, 8), memory_mb=1e-6)
    assert engine.chunk_size == 4
    assert engine.chunk_timings == {}
    assert set(engine.chunk_skipped) == {4, 8, 16}
    x = images(2, 4)
    assert engine.attribute(x, np.zeros_like(x)).attributions.shape == (2,) + SHAPE
    assert choose_chunk_size(model, SHAPE, candidates=(16, 32), memory_mb=1e-6) == 16


def test_the_memory_budget_bounds_the_chunks_tried(model):
    per_sample = estimate_sample_bytes(model, SHAPE)
    engine = IGEngine(model, SHAPE, steps=4, chunk_size="auto", chunk_candidates=(2, 4, 8, 16, 32),
                      parallel_iterations=1, memory_mb=8.5 * per_sample / 2 ** 20)
    assert set(engine.chunk_timings) <= {2, 4, 8}
    assert {16, 32} <= set(engine.chunk_skipped)
    assert engine.chunk_size in (2, 4, 8)
    # in-flight chunks count: with two at once, 8 no longer fits the same budget
    engine2 = IGEngine(model, SHAPE, steps=4, chunk_size="auto", chunk_candidates=(2, 4, 8, 16, 32),
                       parallel_iterations=2, memory_mb=8.5 * per_sample / 2 ** 20)
    assert engine2.chunk_size in (2, 4) and 8 in engine2.chunk_skipped


def test_choose_chunk_size_for_a_plain_model_callable(model):
    chosen = choose_chunk_size(model, SHAPE, candidates=(3, 6))
    assert chosen in (3, 6)


def test_sample_bytes_estimate_grows_with_the_model_and_sees_inside_nested_functions(model, tmp_path):
    import keras
    small = estimate_sample_bytes(model, SHAPE)
    # at least every layer's output once, 4 bytes a float
    layer_floats = sum(int(np.prod(layer.output.shape[1:])) for layer in model.layers)
    assert small >= 4 * layer_floats
    wider = keras.Sequential([keras.Input(SHAPE), keras.layers.Conv2D(48, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(CLASSES)])
    assert estimate_sample_bytes(wider, SHAPE) > small
    # a SavedModel signature is one call op wrapping the whole network
    model.export(str(tmp_path / "sm"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))  # keep it: its variables die with it
    signature = loaded.signatures["serving_default"]
    wrapped = lambda x: next(iter(signature(x).values()))  # noqa: E731
    assert estimate_sample_bytes(wrapped, SHAPE) >= 4 * layer_floats


def test_auto_chunk_rejects_bad_settings(model):
    with pytest.raises(ValueError, match="chunk_size"):
        IGEngine(model, SHAPE, chunk_size="fast")
    with pytest.raises(ValueError, match="chunk_size"):
        IGEngine(model, SHAPE, chunk_size=0)
    with pytest.raises(ValueError, match="parallel_iterations"):
        IGEngine(model, SHAPE, parallel_iterations=0)


def test_device_placement_on_cpu(model):
    x = images(2, 5)
    placed = IGEngine(model, SHAPE, steps=4, chunk_size=4, device="/CPU:0").attribute(x, np.zeros_like(x))
    default = IGEngine(model, SHAPE, steps=4, chunk_size=4).attribute(x, np.zeros_like(x))
    np.testing.assert_allclose(placed.attributions, default.attributions, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("rule, steps", [("trapezoid", 8), ("adaptive", "auto")])
def test_model_load_traces_so_the_first_batch_runs_warm(tiny_assets, rule, steps):
    """IGModelHandler.load_model warms the model up: the traces happen at load (startup), and real
    batches of other sizes and targets add none."""
    from tests.conftest import CLASSES as NAMES, SIZE
    from transforms.attribute import AttributionSettings, IGModelHandler
    from transforms.models import ModelSpec
    spec = ModelSpec(path=str(tiny_assets["model"]), input_size=(SIZE, SIZE), input_range=(0.0, 1.0), output="logits")
    handler = IGModelHandler(spec, NAMES,
                             AttributionSettings(rule=rule, steps=steps, chunk_size=16))
    model = handler.load_model()
    counts = lambda: (model.engine.trace_count, dict(model.methods.trace_counts))  # noqa: E731
    loaded = counts()
    assert loaded[0] + sum(loaded[1].values()) >= 1          # something was traced at load
    rng = np.random.default_rng(0)
    for n in (3, 5):
        images = rng.uniform(size=(n, SIZE, SIZE, 3)).astype(np.float32)
        model.explain(images, np.zeros((1,) + images.shape, np.float32), np.full(n, -1), [str(i) for i in range(n)])
    assert counts() == loaded
