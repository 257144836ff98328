"""The Explainer: the loaded model as an explainer of the configured method (what the Beam handler loads):
warm-up at load, so real batches trace nothing; Explained rows; the quality metrics it adds."""
import numpy as np
import pytest

from igaudit.pipeline.config import AttributionConfig, QualityConfig
from igaudit.transforms.attribution.explainer import Explainer
from igaudit.transforms.attribution.integrated_gradients import integrated_gradients
from igaudit.transforms.attribution.quality import deletion_insertion_auc, infidelity
from igaudit.transforms.attribution.result import Batch
from tests.transforms.attribution.helpers import SHAPE


@pytest.mark.slow
@pytest.mark.parametrize("rule, steps", [("trapezoid", 8), ("adaptive", "auto")])
def test_model_load_traces_so_the_first_batch_runs_warm(tiny_assets, rule, steps):
    """ExplainerHandler.load_model warms the model up: the traces happen at load (startup), and real
    batches of other sizes and targets add none."""
    from igaudit.pipeline.config import ModelConfig
    from igaudit.transforms.attribute import ExplainerHandler
    from igaudit.transforms.attribution.targets import parse_target
    from tests.conftest import CLASSES as NAMES
    from tests.conftest import SIZE
    spec = ModelConfig(path=str(tiny_assets["model"]), input_size=(SIZE, SIZE), input_range=(0.0, 1.0),
                       output="logits")
    handler = ExplainerHandler(spec, AttributionConfig(rule=rule, steps=steps, chunk_size=16), QualityConfig(),
                               NAMES, parse_target("predicted", NAMES))
    model = handler.load_model()
    counts = lambda: dict(model.engine.trace_counts)  # noqa: E731
    loaded = counts()
    assert sum(loaded.values()) >= 1                  # something was traced at load
    rng = np.random.default_rng(0)
    for n in (3, 5):
        images = rng.uniform(size=(n, SIZE, SIZE, 3)).astype(np.float32)
        model.explain(Batch(images, np.zeros((1,) + images.shape, np.float32), np.full(n, -1),
                            [str(i) for i in range(n)]))
    assert counts() == loaded


def test_warm_up_skips_methods_whose_references_arrive_with_the_data(cnn):
    explainer = Explainer(cnn, SHAPE, "logits", AttributionConfig(method="expected_gradients", chunk_size=8),
                          QualityConfig())
    explainer.warm_up()
    assert explainer.engine.trace_counts == {}


def test_explained_rows_and_the_quality_metrics(cnn, batch):
    """Explained holds per-row steps and gradient samples; with quality enabled, the deletion / insertion
    AUC and infidelity of each row, computed on the explainer's engine with the quality section's settings."""
    x, ids = batch
    attribution = AttributionConfig(rule="trapezoid", steps=6, chunk_size=8)
    quality = QualityConfig(enabled=True, steps=5, infidelity_samples=3)
    explainer = Explainer(cnn, SHAPE, "logits", attribution, quality)
    baselines = np.zeros((1,) + x.shape, np.float32)
    out = explainer.explain(Batch(x, baselines, np.array([-1, 0, 1, 2, -1]), ids))
    np.testing.assert_array_equal(out.steps, 6)
    np.testing.assert_array_equal(out.gradient_samples, 7)
    engine = explainer.engine            # the same computations, called directly
    r = integrated_gradients(engine, x, baselines, np.array([-1, 0, 1, 2, -1]), rule="trapezoid", steps=6)
    np.testing.assert_allclose(out.result.attributions, r.attributions, rtol=1e-5, atol=1e-8)
    deletion, insertion = deletion_insertion_auc(engine.forward, engine.score_of, x, r.attributions, r.targets,
                                                 baselines[0], steps=5, chunk_size=8, ranking="positive")
    infid = infidelity(engine.forward, engine.score_of, x, r.attributions, r.targets, seed_ids=ids,
                       baselines=baselines[0], samples=3, stdev=0.1, chunk_size=8)
    assert set(out.quality) == {"deletion_auc", "insertion_auc", "infidelity"}
    np.testing.assert_allclose(out.quality["deletion_auc"], deletion, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(out.quality["insertion_auc"], insertion, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(out.quality["infidelity"], infid, rtol=1e-4, atol=1e-10)
    # (quality disabled, and methods without steps: test_registry)
