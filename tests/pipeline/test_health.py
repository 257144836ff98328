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


def test_a_broken_set_up_is_suspect_and_the_causes_are_named():
    n = 30
    labels = ["a", "b", "c"] * 10
    index = [0, 1, 2] * 10
    assert health.suspect(index, labels, index, 3) == [] and health.warnings(labels, index, labels, 3) == []
    collapsed = health.suspect(index, ["a"] * n, [0] * n, 3)
    assert len(collapsed) == 2
    assert ("accuracy 0.33 on 30 labelled images is near or below chance (chance is 0.33 for 3 classes; suspect at or "
            "below 1.5x that, 0.50)") in collapsed[0]
    assert "100% of images are predicted 'a' (of 3 classes; suspect at or above 90%)" in collapsed[1]
    assert all("model.input_range" in w and "model.resize" in w and "model.class_names" in w for w in collapsed)
    assert health.suspect(index[:6], ["a"] * 6, [0] * 6, 3) == []    # too few images to judge
    # the case: 6 classes, accuracy 0.15, every image predicted '3'
    six = [0, 1, 2, 3, 4, 5] * 10
    assert len(health.suspect(six, ["3"] * 60, [3] * 60, 6)) == 2
    # accuracy 0.25 on 6 classes is 1.5x chance: suspect; 0.26 is not
    hits = lambda k: [i if j < k else (i + 1) % 6 for j, i in enumerate(six)]   # noqa: E731
    assert "near or below chance" in health.suspect(six, [str(p) for p in hits(15)], hits(15), 6)[0]
    assert health.suspect(six, [str(p) for p in hits(16)], hits(16), 6) == []
    # one class taking 90% is suspect even with the right accuracy; 89% only warns (6 classes: over 50%)
    ninety = [0] * 54 + [1, 2, 3, 4, 5, 1]
    assert "90% of images are predicted '0'" in health.suspect(ninety, [str(p) for p in ninety], ninety, 6)[0]
    most = [0] * 50 + [1, 2, 3, 4, 5, 1]                                     # 50 of 56: 89%
    assert health.suspect(most, [str(p) for p in most], most, 6) == []
    assert "89% of images are predicted '0' (of 6 classes)" in health.warnings(
        [str(p) for p in most], most, [str(p) for p in most], 6)[0]
    unknown = health.warnings(["x"] * n, [-1] * n, labels, 3)
    assert len(unknown) == 1 and "none of the image labels is one of the model's class names" in unknown[0]
    assert health.warnings([None] * n, [-1] * n, labels, 3) == []           # no labels: nothing to say
    assert health.suspect([-1] * n, labels, index, 3) == []                  # nor to judge accuracy on


@pytest.mark.parametrize("classes, share", [(2, 0.9), (3, 0.9), (4, 0.75), (6, 0.5), (19, 0.5)])
def test_collapse_share(classes, share):
    assert health.collapse_share(classes) == pytest.approx(share)


def test_convergence_line_counts_the_short_images():
    assert health.convergence_line(0, 10) is None
    line = health.convergence_line(3, 10)
    assert line.startswith("3 of 10 images stopped at attribution.max_steps before their error estimate met its "
                           "tolerance (converged = false")
