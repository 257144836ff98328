"""The method registry: every configured method name reaches its module, whose `explain(explainer, batch)`
runs the method with the attribution section's settings (what Explainer.explain dispatches to)."""
import numpy as np
import pytest

from igaudit.pipeline.config import AttributionConfig, QualityConfig
from igaudit.transforms.attribution import registry
from igaudit.transforms.attribution.baselines import make_baselines
from igaudit.transforms.attribution.choices import METHODS
from igaudit.transforms.attribution.explainer import Explainer
from igaudit.transforms.attribution.result import Batch, MethodResult
from tests.transforms.attribution.helpers import SHAPE

REFERENCES = np.random.default_rng(3).uniform(size=(4,) + SHAPE).astype(np.float32)
SETTINGS = {   # each method with settings that differ from the defaults, so they are seen to be used
    "integrated_gradients": {"rule": "gauss_legendre", "steps": 5, "baseline": "uniform", "baseline_samples": 2},
    "gradients": {"smoothing": "smoothgrad", "samples": 3, "stdev": 0.2},
    "gradient_x_input": {},
    "expected_gradients": {"baseline_samples": 3},
    "grad_cam": {"layer": "conv1"},
    "occlusion": {"window": 3, "stride": 2, "fill": 0.5},
}


def direct(name, engine, cnn, batch):
    """The method's own function, called with SETTINGS (and the old defaults where a test omits them)."""
    s = SETTINGS[name]
    if name == "integrated_gradients":
        from igaudit.transforms.attribution.integrated_gradients import integrated_gradients
        return integrated_gradients(engine, batch.images, batch.baselines, batch.targets, rule=s["rule"],
                                    steps=s["steps"], image_ids=batch.image_ids)
    if name == "gradients":
        from igaudit.transforms.attribution.gradients import gradients
        return gradients(engine, batch.images, batch.targets, image_ids=batch.image_ids, smoothing="smoothgrad",
                         samples=3, stdev=0.2)
    if name == "gradient_x_input":
        from igaudit.transforms.attribution.gradient_x_input import gradient_x_input
        return gradient_x_input(engine, batch.images, batch.targets)
    if name == "expected_gradients":
        from igaudit.transforms.attribution.expected_gradients import expected_gradients
        return expected_gradients(engine, batch.images, batch.references, batch.image_ids, batch.targets, samples=3)
    if name == "grad_cam":
        from igaudit.transforms.attribution.grad_cam import GradCam
        return GradCam(cnn, "conv1", engine).attribute(batch.images, batch.targets)
    from igaudit.transforms.attribution.occlusion import occlusion
    return occlusion(engine, batch.images, batch.targets, window=3, stride=2, fill=0.5)


def test_every_config_method_has_a_module():
    assert set(METHODS) == set(SETTINGS)
    for name in METHODS:
        module = registry.method(name)
        assert module.__name__ == f"igaudit.transforms.attribution.{name}"
        assert callable(module.explain)
        assert module.COMPLETENESS == (name in ("integrated_gradients", "expected_gradients"))
        assert module.NEEDS_REFERENCES == (name == "expected_gradients")
    with pytest.raises(ValueError, match="unknown attribution method 'lime'"):
        registry.method("lime")


@pytest.mark.parametrize("name", METHODS)
def test_every_method_explains_through_its_module(cnn, batch, name):
    x, ids = batch
    attribution = AttributionConfig(method=name, chunk_size=8, **SETTINGS[name])
    explainer = Explainer(cnn, SHAPE, "logits", attribution, QualityConfig())
    assert explainer.method is registry.method(name)
    baselines = make_baselines(attribution.baseline, x, ids, samples=attribution.baseline_samples
                               if name == "integrated_gradients" else 1)
    rows = Batch(x, baselines, np.array([-1, 0, 1, 2, -1]), ids, REFERENCES)
    r = registry.method(name).explain(explainer, rows)
    assert isinstance(r, MethodResult) and r.method == name
    assert r.attributions.shape == x.shape and np.isfinite(r.attributions).all()
    np.testing.assert_array_equal(r.targets[1:4], [0, 1, 2])
    expected = direct(name, explainer.engine, cnn, rows)
    np.testing.assert_allclose(r.attributions, expected.attributions, rtol=1e-5, atol=1e-8)
    np.testing.assert_array_equal(r.gradient_samples, expected.gradient_samples)
    via_explainer = explainer.explain(rows)          # Explainer.explain dispatches to the same module
    np.testing.assert_allclose(via_explainer.result.attributions, r.attributions, rtol=1e-5, atol=1e-8)
    np.testing.assert_array_equal(via_explainer.gradient_samples, r.gradient_samples)
    assert (r.steps is None) == (name != "integrated_gradients")
    np.testing.assert_array_equal(via_explainer.steps, -1 if r.steps is None else r.steps)   # -1: no steps
    assert via_explainer.quality is None              # quality disabled
    assert np.isfinite(r.completeness_gap).all() == registry.method(name).COMPLETENESS
