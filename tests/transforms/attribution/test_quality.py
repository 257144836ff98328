"""quality: deletion / insertion AUC and infidelity, on models whose answers are known.

Old defaults passed explicitly where a test relied on them: steps 20, chunk_size 64, ranking "positive";
infidelity samples 10, stdev 0.1, chunk_size 64."""
import numpy as np
import pytest

from igaudit.transforms.attribution import quality
from igaudit.transforms.attribution.baselines import seed_from_id
from igaudit.transforms.attribution.quality import (
    deletion_insertion_auc,
    deletion_insertion_curves,
    infidelity,
    pixel_ranks,
)

SHAPE = (6, 7, 3)
D = int(np.prod(SHAPE))


class LinearModel:
    """logits = W x + b (float64); records the batch sizes it is called with."""

    def __init__(self, classes=3, seed=0):
        rng = np.random.default_rng(seed)
        self.w = rng.normal(size=(classes, D))
        self.b = rng.normal(size=classes)
        self.batch_sizes = []

    def forward(self, images):
        self.batch_sizes.append(len(images))
        return np.asarray(images, np.float64).reshape(len(images), -1) @ self.w.T + self.b

    @staticmethod
    def logit(outputs, targets):
        return outputs[np.arange(len(targets)), targets]

    def ig(self, images, targets):
        """Exact IG from a black baseline for the logit score: x * w_target."""
        return images * self.w[targets].reshape((-1,) + SHAPE)

    def gradient(self, targets):
        return self.w[targets].reshape((-1,) + SHAPE)


class TanhModel(LinearModel):
    """A nonlinear model, so infidelity depends on the noise drawn."""

    def forward(self, images):
        self.batch_sizes.append(len(images))
        return np.tanh(np.asarray(images, np.float64).reshape(len(images), -1) @ self.w.T / 4.0) * 3.0 + self.b


def data(n=4, seed=1):
    rng = np.random.default_rng(seed)
    images = (0.05 + 0.95 * rng.random((n,) + SHAPE)).astype(np.float32)   # never equal to the black baseline
    targets = rng.integers(0, 3, size=n)
    return images, targets


def shuffled(attributions, seed=2):
    """The same values at random pixel positions (each image its own permutation)."""
    rng = np.random.default_rng(seed)
    flat = attributions.reshape(len(attributions), -1, attributions.shape[-1])
    return np.stack([a[rng.permutation(len(a))] for a in flat]).reshape(attributions.shape)


# -- deletion / insertion -----------------------------------------------------------------------------
def test_attribution_order_beats_random_order_on_a_linear_model():
    model = LinearModel()
    images, targets = data(n=6)
    ig = model.ig(images, targets)
    black = np.zeros_like(images)
    del_ig, ins_ig = deletion_insertion_auc(model.forward, model.logit, images, ig, targets, black, steps=10,
                                            chunk_size=64, ranking="positive")
    del_rand, ins_rand = deletion_insertion_auc(model.forward, model.logit, images, shuffled(ig), targets, black,
                                                steps=10, chunk_size=64, ranking="positive")
    assert del_ig.shape == ins_ig.shape == (6,)
    assert np.all(del_ig < del_rand)
    assert np.all(ins_ig > ins_rand)
    # for a linear score, deleting the largest contributions first is the lowest curve there is, at every step
    curves = deletion_insertion_curves(model.forward, model.logit, images, ig, targets, black, steps=10,
                                       chunk_size=64, ranking="positive")
    other = deletion_insertion_curves(model.forward, model.logit, images, shuffled(ig), targets, black, steps=10,
                                      chunk_size=64, ranking="positive")
    assert np.all(curves.deletion <= other.deletion + 1e-9)
    assert np.all(curves.insertion >= other.insertion - 1e-9)


def test_curves_by_brute_force():
    model = LinearModel()
    images, targets = data(n=2)
    baselines = np.full_like(images, 0.5)
    rng = np.random.default_rng(3)
    attributions = rng.normal(size=images.shape)
    steps = 4
    curves = deletion_insertion_curves(model.forward, model.logit, images, attributions, targets, baselines,
                                       steps=steps, chunk_size=5, ranking="positive")
    pixels = SHAPE[0] * SHAPE[1]
    counts = np.round(np.arange(steps + 1) * pixels / steps).astype(int)
    np.testing.assert_allclose(curves.fractions, counts / pixels)
    assert curves.fractions[0] == 0.0 and curves.fractions[-1] == 1.0
    for i in range(2):
        order = np.argsort(-attributions[i].sum(-1).ravel(), kind="stable")
        for s, c in enumerate(counts):
            removed = np.zeros(pixels, bool)
            removed[order[:c]] = True
            removed = removed.reshape(SHAPE[:2])[..., None]
            deleted = np.where(removed, baselines[i], images[i])
            inserted = np.where(removed, images[i], baselines[i])
            score = lambda x: model.logit(model.forward(x[None].astype(np.float32)), targets[i:i + 1])[0]
            assert curves.deletion[i, s] == pytest.approx(score(deleted))
            assert curves.insertion[i, s] == pytest.approx(score(inserted))
    d, ins = deletion_insertion_auc(model.forward, model.logit, images, attributions, targets, baselines, steps=steps,
                                    chunk_size=64, ranking="positive")
    f = curves.fractions
    np.testing.assert_allclose(d, [np.sum((c[1:] + c[:-1]) / 2 * np.diff(f)) for c in curves.deletion])
    np.testing.assert_allclose(ins, [np.sum((c[1:] + c[:-1]) / 2 * np.diff(f)) for c in curves.insertion])


def test_ranking_positive_vs_absolute():
    a = np.zeros((1, 2, 2, 1))
    a[0, 0, 0, 0] = -3.0
    a[0, 0, 1, 0] = 1.0
    a[0, 1, 0, 0] = 2.0
    assert pixel_ranks(a, "positive")[0].tolist() == [[3, 1], [0, 2]]
    assert pixel_ranks(a, "absolute")[0].tolist() == [[0, 2], [1, 3]]
    with pytest.raises(ValueError, match="ranking"):
        pixel_ranks(a, "signed")


def test_fixed_chunks_and_chunk_size_invariance():
    model = LinearModel()
    images, targets = data(n=3)
    ig = model.ig(images, targets)
    results = []
    for chunk in (1, 7, 64):
        model.batch_sizes.clear()
        results.append(deletion_insertion_auc(model.forward, model.logit, images, ig, targets, 0.0, steps=5,
                                              chunk_size=chunk, ranking="positive"))
        assert set(model.batch_sizes) == {chunk}                       # every call sees a full chunk
        assert len(model.batch_sizes) == -(-3 * 2 * 5 // chunk)        # 2K forward passes per image
    for d, i in results[1:]:
        np.testing.assert_allclose(d, results[0][0])
        np.testing.assert_allclose(i, results[0][1])


# -- infidelity ---------------------------------------------------------------------------------------
IDS = ["cat-000001", "dog-000002", "cow-000003", "eel-000004"]


def test_infidelity_is_zero_for_exact_attributions_of_a_linear_model():
    model = LinearModel()
    images, targets = data()
    kw = dict(seed_ids=IDS, samples=8, stdev=0.1, chunk_size=64)
    # IG is multiplied by (x - baseline): pass the baselines (Captum's multiply_by_inputs convention)
    exact_ig = infidelity(model.forward, model.logit, images, model.ig(images, targets), targets,
                          baselines=np.zeros_like(images), **kw)
    # plain gradients are local: no baselines
    exact_grad = infidelity(model.forward, model.logit, images, model.gradient(targets), targets, **kw)
    wrong = infidelity(model.forward, model.logit, images, shuffled(model.ig(images, targets)), targets,
                       baselines=np.zeros_like(images), **kw)
    zero = infidelity(model.forward, model.logit, images, np.zeros_like(images), targets, **kw)
    assert exact_ig.shape == (4,)
    assert np.all(exact_ig < 1e-9) and np.all(exact_grad < 1e-9)
    assert np.all(wrong > 1e-3) and np.all(zero > 1e-3)
    # normalize=True forgives a global scale, as Captum's normalize does
    doubled = 2.0 * model.ig(images, targets)
    assert np.all(infidelity(model.forward, model.logit, images, doubled, targets, baselines=0.0, **kw) > 1e-3)
    assert np.all(infidelity(model.forward, model.logit, images, doubled, targets, baselines=0.0, normalize=True,
                             **kw) < 1e-9)


def test_infidelity_matches_the_definition():
    model = TanhModel()
    images, targets = data(n=2)
    attributions = np.random.default_rng(4).normal(size=images.shape)
    baselines = np.full_like(images, 0.25)
    got = infidelity(model.forward, model.logit, images, attributions, targets, seed_ids=IDS[:2], samples=5,
                     stdev=0.2, baselines=baselines, chunk_size=4)
    for i in range(2):
        rng = np.random.default_rng([seed_from_id(IDS[i]), quality._INFIDELITY_STREAM])
        f = lambda x: model.logit(model.forward(x[None].astype(np.float32)), targets[i:i + 1])[0]
        errors = []
        for _ in range(5):
            noise = rng.standard_normal(SHAPE, dtype=np.float32) * np.float32(0.2)
            scaled = noise / (images[i].astype(np.float64) - baselines[i])          # I / (x - x')
            errors.append((np.sum(scaled * attributions[i]) - (f(images[i]) - f(images[i] - noise))) ** 2)
        assert got[i] == pytest.approx(np.mean(errors), rel=1e-6)


def test_infidelity_is_seeded_by_image_id_not_by_batch():
    model = TanhModel()
    images, targets = data()
    attributions = shuffled(model.ig(images, targets))
    kw = dict(samples=6, stdev=0.1, baselines=0.0)
    base = infidelity(model.forward, model.logit, images, attributions, targets, seed_ids=IDS, chunk_size=5, **kw)
    order = [2, 0, 3, 1]
    permuted = infidelity(model.forward, model.logit, images[order], attributions[order], targets[order],
                          seed_ids=[IDS[i] for i in order], chunk_size=64, **kw)
    np.testing.assert_allclose(permuted, base[order], rtol=1e-10)
    alone = infidelity(model.forward, model.logit, images[1:2], attributions[1:2], targets[1:2],
                       seed_ids=IDS[1:2], chunk_size=3, **kw)
    np.testing.assert_allclose(alone, base[1:2], rtol=1e-10)
    other_ids = infidelity(model.forward, model.logit, images, attributions, targets,
                           seed_ids=[s + "x" for s in IDS], chunk_size=5, **kw)
    assert not np.allclose(other_ids, base)
    assert set(model.batch_sizes) <= {5, 64, 3}


# the old defaults, which these functions no longer have
OLD_CURVES = dict(steps=20, chunk_size=64, ranking="positive")
OLD_INFIDELITY = dict(samples=10, stdev=0.1, chunk_size=64)


def test_input_checks():
    model = LinearModel()
    images, targets = data(n=2)
    with pytest.raises(ValueError, match="seed ids"):
        infidelity(model.forward, model.logit, images, images, targets, seed_ids=IDS, **OLD_INFIDELITY)
    with pytest.raises(ValueError, match="baselines"):
        deletion_insertion_auc(model.forward, model.logit, images, images, targets, np.zeros((2, 3, 3, 3)),
                               **OLD_CURVES)
    empty = np.zeros((0,) + SHAPE, np.float32)
    no_targets = np.zeros(0, np.int64)
    d, i = deletion_insertion_auc(model.forward, model.logit, empty, empty, no_targets, 0.0, **OLD_CURVES)
    assert d.shape == i.shape == (0,)
    assert infidelity(model.forward, model.logit, empty, empty, no_targets, seed_ids=[],
                      **OLD_INFIDELITY).shape == (0,)
    with pytest.raises(ValueError, match="steps"):
        deletion_insertion_auc(model.forward, model.logit, images, images, targets, 0.0,
                               **{**OLD_CURVES, "steps": 0})


# -- with the gradient engine: one trace, real IG ------------------------------------------------------
def test_with_the_ig_engine_on_a_keras_linear_model():
    import keras

    from igaudit.transforms.attribution.engine import GradientEngine
    from igaudit.transforms.attribution.integrated_gradients import integrated_gradients

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(3)])
    engine = GradientEngine(model, SHAPE, output="logits", score="logit", chunk_size=16)
    images, _ = data(n=5)
    batch = integrated_gradients(engine, images, np.zeros_like(images), rule="trapezoid", steps=4)
    black = np.zeros_like(images)
    del_ig, ins_ig = deletion_insertion_auc(engine.forward, engine.score_of, images, batch.attributions,
                                            batch.targets, black, steps=8, chunk_size=16, ranking="positive")
    del_rand, ins_rand = deletion_insertion_auc(engine.forward, engine.score_of, images,
                                                shuffled(batch.attributions), batch.targets, black,
                                                steps=8, chunk_size=16, ranking="positive")
    assert np.all(del_ig < del_rand) and np.all(ins_ig > ins_rand)
    ids = [f"img-{i}" for i in range(5)]
    exact = infidelity(engine.forward, engine.score_of, images, batch.attributions, batch.targets, seed_ids=ids,
                       baselines=black, samples=4, stdev=0.1, chunk_size=16)
    wrong = infidelity(engine.forward, engine.score_of, images, shuffled(batch.attributions), batch.targets,
                       seed_ids=ids, baselines=black, samples=4, stdev=0.1, chunk_size=16)
    assert np.all(exact < 1e-6) and np.all(wrong > 100 * exact.max())
    assert engine.trace_counts["forward"] == 1        # one trace for IG's forward and every metric chunk
