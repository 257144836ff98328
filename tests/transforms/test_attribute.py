"""transforms/attribute.py: the RunInference handler turns non-finite scores or attributions into rejects."""
import numpy as np

from igaudit.pipeline.config import AttributionConfig, ModelConfig, QualityConfig
from igaudit.transforms.attribute import ExplainerHandler
from igaudit.transforms.attribution.explainer import Explained
from igaudit.transforms.attribution.result import MethodResult
from igaudit.transforms.attribution.targets import TargetSpec
from igaudit.transforms.records import DecodedImage, Rejected


def test_non_finite_model_outputs_become_rejects():
    class NaNModel:
        def probabilities(self, images):
            return np.tile([0.9, 0.1], (len(images), 1))

        def explain(self, batch):
            n = len(batch.images)
            att = np.zeros_like(batch.images)
            att[0, 0, 0, 0] = np.nan
            r = MethodResult("integrated_gradients", att, np.zeros((n, 2)), np.zeros(n, int), np.ones(n),
                             np.zeros(n, int), np.ones(n), np.zeros(n), np.zeros(n), np.full(n, 3),
                             np.zeros(n, int))
            return Explained(r, np.full(n, 2), np.full(n, 3))

    handler = ExplainerHandler(ModelConfig(path="m.keras", input_size=(4, 4), input_range=(0.0, 1.0), output="logits"),
                               AttributionConfig(), QualityConfig(), ["a", "b"], TargetSpec("predicted"))
    batch = [DecodedImage(f"u{i}", "a", f"id{i}", np.zeros((4, 4, 3), np.float32)) for i in range(2)]
    out = list(handler.run_inference(batch, NaNModel()))
    assert isinstance(out[0], Rejected) and out[0].reason.startswith("non_finite")
    assert not isinstance(out[1], Rejected)
