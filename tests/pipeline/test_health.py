"""pipeline/health.py: when a finished run fails, and when its answers look misconfigured."""
import pytest

from igaudit.pipeline import health


@pytest.mark.parametrize("counts, share, expected", [
    ((10, 10, 0), 0.5, ("ok", None)),
    ((10, 5, 5), 0.5, ("ok", None)),                  # exactly the share: still ok
    ((10, 4, 6), 0.5, ("failed", "6 of 10 inputs (60%) were rejected")),
    ((6, 0, 6), 0.9, ("failed", "no image was attributed: all 6 inputs were rejected")),
    ((10, 8, 1), 0.5, ("failed", "counts do not reconcile")),
    ((10, 9, 1), 0.0, ("failed", "more than analysis.max_rejected_share (0%)")),
])
def test_status(counts, share, expected):
    state, reason = health.status(*counts, max_rejected_share=share)
    assert state == expected[0]
    assert (reason is None) if expected[1] is None else expected[1] in reason


def test_accuracy_counts_only_labels_the_model_knows():
    assert health.accuracy([0, 1, 2, -1], [0, 1, 0, 1]) == pytest.approx(2 / 3)
    assert health.accuracy([-1, None], [0, 1]) is None


def test_warnings_name_the_likely_causes():
    n = 30
    labels = ["a", "b", "c"] * 10
    index = [0, 1, 2] * 10
    right = health.warnings(labels, index, labels, index, 3)
    assert right == []
    collapsed = health.warnings(labels, index, ["a"] * n, [0] * n, 3)
    assert len(collapsed) == 2
    assert "accuracy 0.33 on 30 labelled images is near chance (chance is 0.33 for 3 classes; warned at or below 1.5x that, 0.50)" in collapsed[0]
    assert "100% of images are predicted 'a'" in collapsed[1]
    assert all("model.input_range" in w and "model.resize" in w and "model.class_names" in w for w in collapsed)
    assert health.warnings(labels[:6], index[:6], ["a"] * 6, [0] * 6, 3) == []    # too few images to judge
    unknown = health.warnings(["x"] * n, [-1] * n, labels, index, 3)
    assert len(unknown) == 1 and "none of the image labels is one of the model's class names" in unknown[0]
    assert health.warnings([None] * n, [-1] * n, labels, index, 3) == []           # no labels: nothing to say


@pytest.mark.parametrize("classes, share", [(2, 0.9), (3, 0.9), (4, 0.75), (6, 0.5), (19, 0.5)])
def test_collapse_share(classes, share):
    assert health.collapse_share(classes) == pytest.approx(share)


def test_convergence_line_counts_the_short_images():
    assert health.convergence_line(0, 10) is None
    line = health.convergence_line(3, 10)
    assert line.startswith("3 of 10 images ended above a tolerance (converged = false")
    assert "attribution.tolerance" in line and "pixel_tolerance" in line and "max_steps" in line
