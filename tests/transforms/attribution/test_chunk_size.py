"""`attribution.chunk_size: auto` (`chunk_size`), tested as a mechanism (no timings are asserted): the probe
picks one of its timed candidates, stays inside the memory budget, times the configured method on a batch
of `batch_size` images, and the winner's trace is reused, so later calls trace nothing.

The old IGEngine took chunk_size="auto" itself; now `choose_chunk_size(explainer, batch_size, ...)` probes
an `Explainer` (the configured method), and `Explainer` runs it when `attribution.chunk_size` is auto.
Old defaults passed explicitly: output "logits", score "probability", IG rule "trapezoid".
"""
import numpy as np
import pytest
import tensorflow as tf

from igaudit.pipeline.config import AttributionConfig, QualityConfig
from igaudit.transforms.attribution.chunk_size import CANDIDATES, choose_chunk_size, estimate_sample_bytes
from igaudit.transforms.attribution.engine import GradientEngine
from igaudit.transforms.attribution.explainer import Explainer
from igaudit.transforms.attribution.integrated_gradients import integrated_gradients
from igaudit.transforms.attribution.result import Batch
from tests.transforms.attribution.helpers import CLASSES12 as CLASSES
from tests.transforms.attribution.helpers import SHAPE12 as SHAPE
from tests.transforms.attribution.helpers import cnn12, flat_model
from tests.transforms.attribution.helpers import images12 as images


@pytest.fixture(scope="module")
def model():
    return cnn12()


def explainer_for(model, chunk_size=8, batch_size=1, **attribution):
    """An Explainer of fixed-rule IG (trapezoid, as the old IGEngine); chunk_size fixed unless "auto"."""
    settings = {"method": "integrated_gradients", "rule": "trapezoid", "steps": 6, "chunk_size": chunk_size,
                **attribution}
    return Explainer(model, SHAPE, "logits", AttributionConfig(**settings), QualityConfig(), batch_size=batch_size)


def batch_of(x, targets=None):
    n = len(x)
    return Batch(x, np.zeros((1,) + x.shape, np.float32), np.full(n, -1) if targets is None else targets,
                 [f"img-{i}" for i in range(n)])


def tiny_model(classes=5):
    """A plain TF function of the pixels (fast to trace): tanh of a random linear map."""
    w = tf.constant(np.random.default_rng(0).normal(size=(int(np.prod(SHAPE)), classes)).astype(np.float32) * 0.1)
    return flat_model(lambda f: 3.0 * tf.tanh(f @ w))


# -- the probe's choice ------------------------------------------------------------------------------
@pytest.mark.slow
def test_auto_chunk_picks_a_candidate_and_reuses_its_trace(model):
    candidates = (4, 8, 16)
    explainer = explainer_for(model, steps=6)
    engine = explainer.engine
    chosen = choose_chunk_size(explainer, 5, candidates=candidates)
    assert chosen == engine.chunk_size and engine.chunk_size in candidates
    assert explainer.chunk_timings and set(explainer.chunk_timings) <= set(candidates)
    assert engine.chunk_size in explainer.chunk_timings
    assert all(rate > 0 for rate in explainer.chunk_timings.values())
    # one trace per timed candidate, however often it was timed: the winner's probe trace is the one kept
    assert engine.trace_counts["gradients"] == len(explainer.chunk_timings)
    probed = dict(engine.trace_counts)
    x = images(5, 3)
    targets = np.arange(5) % CLASSES
    auto = explainer.explain(batch_of(x, targets)).result
    fixed = integrated_gradients(GradientEngine(model, SHAPE, output="logits", score="probability", chunk_size=5),
                                 x, np.zeros_like(x), targets, rule="trapezoid", steps=6)
    np.testing.assert_allclose(auto.attributions, fixed.attributions, rtol=1e-5, atol=1e-7)
    assert engine.trace_counts == probed          # the real batch ran on the winner's trace: no new one
    losers = [c for c in explainer.chunk_timings if c != chosen]
    if losers:                                    # the losers' traces were dropped (their memory freed)
        engine.chunk_size = losers[0]
        explainer.explain(batch_of(x, targets))
        assert engine.trace_counts["gradients"] == probed["gradients"] + 1


@pytest.mark.parametrize("settings, traced, untraced", [
    pytest.param({"rule": "trapezoid", "steps": 6}, "gradients", "point_gradients", marks=pytest.mark.slow),
    ({"rule": "adaptive", "steps": "auto", "max_steps": 16}, "point_gradients", "gradients"),
    ({"method": "gradients"}, "gradients", "point_gradients"),
    pytest.param({"method": "occlusion", "window": 4, "stride": 4}, "occlusion", "gradients",
                 marks=pytest.mark.slow),
])
def test_the_probe_times_the_configured_method_on_a_batch_of_batch_size(monkeypatch, settings, traced, untraced):
    """Replaces the old samples_per_call test: the probe no longer times a fixed-rule IG call of a given
    sample count (padding charged), it runs `Explainer.explain` (the configured method, refinement rounds
    included) on one batch of `batch_size` images per call: two calls per candidate in the first pass
    (trace + warm up, timed), one per later pass."""
    calls = []
    original = Explainer.explain

    def explain(self, batch):
        calls.append((self.engine.chunk_size, len(batch.images), batch.images))
        return original(self, batch)

    monkeypatch.setattr(Explainer, "explain", explain)
    explainer = explainer_for(tiny_model(), **settings)
    engine = explainer.engine
    candidates, repeats = (4, 8), 2
    choose_chunk_size(explainer, 3, candidates=candidates, repeats=repeats)
    timed = explainer.chunk_timings
    assert timed and engine.chunk_size in timed
    per_chunk = {c: sum(1 for size, _, _ in calls if size == c) for c in candidates}
    assert per_chunk == {c: (2 + (repeats - 1) if c in timed else 0) for c in candidates}
    assert all(n == 3 for _, n, _ in calls)                               # batch_size images each time
    assert all(np.array_equal(images, calls[0][2]) for _, _, images in calls)   # the same batch
    assert engine.trace_counts[traced] == len(timed)                       # the configured method ran
    assert untraced not in engine.trace_counts


@pytest.mark.slow
@pytest.mark.parametrize("method, settings", [
    ("gradients", {}), ("integrated_gradients", {"rule": "adaptive", "steps": "auto"})])
def test_an_explainer_with_chunk_size_auto_probes_its_method_at_construction(monkeypatch, method, settings):
    """attribution.chunk_size: auto -> Explainer chooses among CANDIDATES with its own method, on batches
    of its batch_size, and keeps the timings."""
    seen = []
    original = Explainer.explain

    def explain(self, batch):
        seen.append((self.engine.chunk_size, len(batch.images)))
        return original(self, batch)

    monkeypatch.setattr(Explainer, "explain", explain)
    explainer = explainer_for(tiny_model(), chunk_size="auto", batch_size=3, method=method, **settings)
    assert seen and all(n == 3 for _, n in seen)
    assert {c for c, _ in seen} == set(explainer.chunk_timings) and set(explainer.chunk_timings) <= set(CANDIDATES)
    assert explainer.engine.chunk_size in explainer.chunk_timings
    assert explainer.engine.chunk_size == max(explainer.chunk_timings, key=explainer.chunk_timings.get)
    traced = dict(explainer.engine.trace_counts)
    x = images(3, 12)
    explainer.explain(batch_of(x))
    assert explainer.engine.trace_counts == traced


# -- memory ------------------------------------------------------------------------------------------
def test_a_tiny_memory_budget_forces_the_smallest_candidate(model):
    explainer = explainer_for(model, steps=4)
    assert choose_chunk_size(explainer, 2, candidates=(16, 4, 8), memory_mb=1e-6) == 4
    assert explainer.engine.chunk_size == 4
    assert explainer.chunk_timings == {}
    assert set(explainer.chunk_skipped) == {4, 8, 16}
    x = images(2, 4)
    assert explainer.explain(batch_of(x)).result.attributions.shape == (2,) + SHAPE
    assert choose_chunk_size(explainer_for(model, steps=4), 2, candidates=(16, 32), memory_mb=1e-6) == 16


@pytest.mark.slow
def test_the_memory_budget_bounds_the_chunks_tried(model):
    per_sample = estimate_sample_bytes(model, SHAPE)
    explainer = explainer_for(model, steps=4)
    explainer.engine.parallel_iterations = 1
    choose_chunk_size(explainer, 4, candidates=(2, 4, 8, 16, 32), memory_mb=8.5 * per_sample / 2 ** 20)
    assert set(explainer.chunk_timings) <= {2, 4, 8}
    assert {16, 32} <= set(explainer.chunk_skipped)
    assert explainer.engine.chunk_size in (2, 4, 8)
    # in-flight chunks count: with two at once, 8 no longer fits the same budget
    explainer2 = explainer_for(model, steps=4)
    explainer2.engine.parallel_iterations = 2
    choose_chunk_size(explainer2, 4, candidates=(2, 4, 8, 16, 32), memory_mb=8.5 * per_sample / 2 ** 20)
    assert explainer2.engine.chunk_size in (2, 4) and 8 in explainer2.chunk_skipped


def test_choose_chunk_size_for_a_plain_model_callable():
    explainer = explainer_for(tiny_model())            # a plain TF function, no Keras model
    chosen = choose_chunk_size(explainer, 2, candidates=(3, 6))
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
        AttributionConfig(chunk_size="fast")            # "auto" or an int is checked where it is configured
    with pytest.raises(ValueError, match="chunk_size"):
        GradientEngine(model, SHAPE, output="logits", score="probability", chunk_size=0)
    with pytest.raises(ValueError, match="parallel_iterations"):
        GradientEngine(model, SHAPE, output="logits", score="probability", chunk_size=64, parallel_iterations=0)
    with pytest.raises(ValueError, match="chunk candidates"):
        choose_chunk_size(explainer_for(model), 2, candidates=(0, 8))
