"""Attribution options through the whole pipeline: methods, baselines, targets, adaptive steps,
smoothing, quality metrics, and seeding that survives re-batching.

Every test that runs a job through (run_job) is marked slow; the unknown-target errors stop in the preflight
checks before any pipeline is built, so they stay in the fast loop."""
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from igaudit.pipeline.config import from_dict
from igaudit.pipeline.errors import UserError
from igaudit.pipeline.job import run_job
from igaudit.pipeline.run_dir import read_images_table
from tests.conftest import CLASSES, SIZE, tiny_config


def run(tiny_assets, out, **attribution):
    quality = attribution.pop("quality", None)
    raw = tiny_config(tiny_assets, out, attribution=attribution, output={"raw": True, "overlays": False})
    if quality:
        raw["quality"] = quality
    summary = run_job(from_dict(raw))
    rows = sorted(read_images_table(str(out)).to_pylist(), key=lambda r: (r["image_id"], r["target"]))
    return summary, rows


def raw_of(out, row, suffix=""):
    return np.load(out / "raw" / f"{row['image_id']}{suffix}.npy")


@pytest.mark.slow
@pytest.mark.parametrize("method, extra", [
    ("gradients", {}),
    ("gradient_x_input", {}),
    ("expected_gradients", {"baseline_samples": 4, "references": 3}),
    ("grad_cam", {}),
    ("occlusion", {"window": 6, "stride": 6}),
    ("integrated_gradients", {"smoothing": "smoothgrad_sq", "samples": 3}),
])
def test_every_method_runs_end_to_end(tiny_assets, tmp_path, method, extra):
    summary, rows = run(tiny_assets, tmp_path / "o", method=method, **extra)
    assert summary.attributed == tiny_assets["good"] and summary.matched == summary.attributed + summary.rejected
    for r in rows:
        assert r["method"] == method
        assert (r["rule"] is None) == (method != "integrated_gradients")     # a rule only where one applies
        assert (r["steps"] is None) == (method != "integrated_gradients")    # steps too
        attribution = raw_of(tmp_path / "o", r)
        assert attribution.shape == (SIZE, SIZE, 3) and np.isfinite(attribution).all()
        assert np.abs(attribution).sum() > 0
        assert r["gradient_samples"] >= (0 if method == "occlusion" else 1)
        assert np.isclose(sum(r["grid"]), 1.0)
    assert (tmp_path / "o" / "classes.parquet").exists()


@pytest.mark.slow
def test_gradient_x_input_is_input_times_gradient(tiny_assets, tmp_path):
    _, grads = run(tiny_assets, tmp_path / "g", method="gradients")
    _, gxi = run(tiny_assets, tmp_path / "x", method="gradient_x_input")
    for g, x in zip(grads, gxi):
        from igaudit.transforms.imaging.decode import decode_image
        with open(g["uri"], "rb") as f:
            pixels = decode_image(f.read(), (SIZE, SIZE))
        np.testing.assert_allclose(raw_of(tmp_path / "x", x), pixels * raw_of(tmp_path / "g", g), rtol=1e-4,
                                   atol=1e-7)


@pytest.mark.slow
def test_top_k_rows_and_files_are_keyed_by_image_and_target(tiny_assets, tmp_path):
    summary, rows = run(tiny_assets, tmp_path / "o", target="top_k", k=2, steps=4)
    assert len(rows) == 2 * summary.attributed
    by_image = {}
    for r in rows:
        by_image.setdefault(r["image_id"], []).append(r["target"])
        assert (tmp_path / "o" / "raw" / f"{r['image_id']}-t{r['target']}.npy").exists()
        assert r["mask_path"] == f"masks/{r['image_id']}-t{r['target']}.png"
    assert all(len(set(t)) == 2 for t in by_image.values())
    assert all(r["predicted"] in by_image[r["image_id"]] for r in rows)
    classes = pq.read_table(tmp_path / "o" / "classes.parquet").to_pylist()
    assert sum(c["count"] for c in classes if c["group_by"] == "label") == summary.attributed


@pytest.mark.slow
def test_fixed_class_target_by_name_and_index(tiny_assets, tmp_path):
    _, by_name = run(tiny_assets, tmp_path / "n", target="bee", steps=4)
    _, by_index = run(tiny_assets, tmp_path / "i", target=1, steps=4)
    assert {r["target"] for r in by_name} == {1} and {r["target_name"] for r in by_name} == {"bee"}
    assert [r["attribution_sum"] for r in by_name] == pytest.approx([r["attribution_sum"] for r in by_index])


@pytest.mark.parametrize("target, message", [("bea", "bea"), (7, "7")])
def test_unknown_class_target_is_a_clear_error(tiny_assets, tmp_path, target, message):
    """Not slow: run_job refuses in its preflight checks, before any pipeline is built."""
    with pytest.raises(UserError, match=message):
        run(tiny_assets, tmp_path / "o", target=target)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_mean_baseline_is_the_dataset_mean(tiny_assets, tmp_path):
    _, rows = run(tiny_assets, tmp_path / "o", baseline="mean", steps=8)
    from igaudit.transforms.imaging.decode import decode_image
    pixels = []
    for r in rows:
        with open(r["uri"], "rb") as f:
            pixels.append(decode_image(f.read(), (SIZE, SIZE)))
    mean = np.mean(pixels, axis=0)
    for r, x in zip(rows, pixels):
        # IG is (x - x') * integrated gradient: zero wherever the image equals the baseline's pixel value
        attribution = raw_of(tmp_path / "o", r)
        assert np.allclose(attribution[np.isclose(x, mean, atol=1e-7)], 0.0)
    same_target = [r["score_baseline"] for r in rows if r["target"] == rows[0]["target"]]
    assert np.ptp(same_target) < 1e-6     # one baseline for every image


@pytest.mark.slow
def test_baseline_image_path(tiny_assets, tmp_path):
    baseline = tmp_path / "grey.png"
    Image.fromarray(np.full((SIZE, SIZE, 3), 128, np.uint8)).save(baseline)
    _, grey = run(tiny_assets, tmp_path / "o", baseline=str(baseline), steps=8)
    _, black = run(tiny_assets, tmp_path / "b", steps=8)
    assert not np.allclose([r["score_baseline"] for r in grey], [r["score_baseline"] for r in black])
    with pytest.raises(UserError, match="attribution.baseline"):
        run(tiny_assets, tmp_path / "x", baseline=str(tmp_path / "missing.png"))


@pytest.mark.slow
def test_adaptive_steps_record_steps_and_meet_the_tolerance(tiny_assets, tmp_path):
    _, rows = run(tiny_assets, tmp_path / "o", steps="auto", tolerance=0.01, max_steps=512,
                  rule="gauss_legendre")
    for r in rows:
        assert r["steps"] >= 1 and r["gradient_samples"] >= r["steps"]
        assert r["converged"] == (r["relative_gap"] <= 0.01 + 1e-6 or abs(r["completeness_gap"]) <= 1e-6)
        if r["steps"] < 512:
            assert r["relative_gap"] <= 0.01 + 1e-6 or abs(r["completeness_gap"]) <= 1e-6


@pytest.mark.slow
def test_quality_metrics_are_carried_into_rows_and_classes(tiny_assets, tmp_path):
    _, rows = run(tiny_assets, tmp_path / "o", steps=8, quality={"enabled": True, "steps": 5,
                                                                   "infidelity_samples": 3})
    for r in rows:
        assert np.isfinite([r["deletion_auc"], r["insertion_auc"], r["infidelity"]]).all()
    classes = pq.read_table(tmp_path / "o" / "classes.parquet").to_pylist()
    assert all(c["mean_deletion_auc"] is not None for c in classes)
    _, plain = run(tiny_assets, tmp_path / "p", steps=8)
    assert all(r["deletion_auc"] is None for r in plain)


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    {"baseline": "uniform", "baseline_samples": 2},
    {"method": "gradients", "smoothing": "smoothgrad", "samples": 4},
    {"method": "expected_gradients", "baseline_samples": 3, "references": 4},
])
def test_seeded_draws_do_not_depend_on_batching(tiny_assets, tmp_path, options):
    _, a = run(tiny_assets, tmp_path / "a", steps=6, batch_size=1, chunk_size=7, **options)
    _, b = run(tiny_assets, tmp_path / "b", steps=6, batch_size=5, chunk_size=32, **options)
    assert [r["image_id"] for r in a] == [r["image_id"] for r in b]
    for x, y in zip(a, b):
        np.testing.assert_allclose(raw_of(tmp_path / "a", x), raw_of(tmp_path / "b", y), rtol=1e-4, atol=1e-6)


def test_config_errors_for_options(tiny_assets, tmp_path):
    from igaudit.pipeline.config import ConfigError
    for bad, field in [({"method": "lime"}, "attribution.method"), ({"steps": "many"}, "attribution.steps"),
                       ({"smoothing": "blur"}, "attribution.smoothing"), ({"k": 0}, "attribution.k")]:
        with pytest.raises(ConfigError, match=field):
            from_dict(tiny_config(tiny_assets, tmp_path / "o", attribution=bad))
    assert set(CLASSES) == {"ant", "bee", "cat"}


def test_runinference_gets_fixed_batches_of_batch_size():
    """With min_batch_size 1 Beam starts at one image per batch and grows by timing; the engine's
    chunks are sized for full batches."""
    from igaudit.pipeline.config import AttributionConfig, ModelConfig, QualityConfig
    from igaudit.transforms.attribute import ExplainerHandler
    from igaudit.transforms.attribution.targets import parse_target
    handler = ExplainerHandler(ModelConfig("m.keras", (4, 4), (0.0, 1.0), "logits"), AttributionConfig(batch_size=7),
                               QualityConfig(), ["a", "b"], parse_target("predicted", ["a", "b"]))
    assert handler.batch_elements_kwargs() == {"min_batch_size": 7, "max_batch_size": 7}
