"""analysis/skew/evidence.py + verdict.py: the interventions on a planted shortcut and on an object, with toy models
whose reliance is known (no Beam, no TensorFlow)."""
import numpy as np
import pytest

from igaudit.transforms.analysis.skew.evidence import measure
from igaudit.transforms.analysis.skew.verdict import evidence_label, judge, outcome
from igaudit.transforms.analysis.skew.wording import describe
from igaudit.transforms.records import InterventionTest

SIZE, GRID = 32, 16


def softmax2(score):
    p1 = 1 / (1 + np.exp(-score))
    return np.stack([1 - p1, p1], axis=1)


def patch_model(images):
    """Class 1 when the top-left 4x4 block is a white/black checker: a model that learnt a stamp."""
    block = images[:, :4, :4].mean(-1)
    checker = (np.indices((4, 4)).sum(0) % 2).astype(float)
    return softmax2(40 * (1 - np.abs(block - checker).mean((1, 2)) - 0.8))


def blob_model(images):
    """Class 1 when a bright blob is anywhere: a model of the object (it max-pools a 4x4 brightness)."""
    grey = images.mean(-1)
    local = np.array([max(g[y:y + 4, x:x + 4].mean() for y in range(0, SIZE - 3, 2) for x in range(0, SIZE - 3, 2))
                      for g in grey])
    return softmax2(30 * (local - 0.6))


def noise(rng, n):
    return rng.uniform(0.0, 0.4, (n, SIZE, SIZE, 3)).astype(np.float32)


def with_patch(images):
    out = images.copy()
    out[:, :4, :4] = (np.indices((4, 4)).sum(0) % 2)[..., None]
    return out


def with_blobs(rng, images):
    out = images.copy()
    for img in out:
        y, x = rng.integers(0, SIZE - 5, 2)
        img[y:y + 5, x:x + 5] = rng.uniform(0.85, 1.0, 3)
    return out


def region_test(cells, class_index=1):
    return InterventionTest("t", "label", "one", class_index, "region", "the top-left 2x2 cells", cells=cells, grid=GRID)


def test_a_stamped_patch_is_needed_sufficient_transplanted_and_repeating():
    rng = np.random.default_rng(0)
    cls, other = with_patch(noise(rng, 24)), noise(rng, 24)
    f = measure(region_test((0, 2, 0, 2)), cls, other, patch_model)
    assert f["accuracy"] == 1.0 and f["accuracy_removed"] == 0.0 and f["accuracy_control"] == 1.0
    assert f["drop"] > 0.9 and abs(f["control_drop"]) < 0.05 and f["relying"] == 24
    assert f["kept_class"] == 1.0 and f["kept_other"] == 0.0
    assert f["stamp_repeat"] > 0.95 and f["stamp_others"] < 0.3 and f["stamp_pixels"] >= 9
    assert f["transplant_flip"] == 1.0 and f["transplant_control"] == 0.0
    verdict = judge(f)
    assert verdict == {"needed": True, "sufficient": True, "transplanted": True, "repeating": True}
    assert outcome(verdict) == "shortcut"
    text = describe(region_test((0, 2, 0, 2)), dict(f, attending=24, class_count=30))
    assert "the 24 one images that look there (80% of the class)" in text
    assert "drops accuracy 1.00 → 0.00" in text and "turns 100% of them into one" in text


def test_an_object_seen_anywhere_is_not_a_shortcut():
    rng = np.random.default_rng(1)
    cls, other = with_blobs(rng, noise(rng, 24)), noise(rng, 24)
    # the region where this class's attribution happens to pile up: the centre
    f = measure(region_test((6, 10, 6, 10)), cls, other, blob_model)
    verdict = judge(f)
    assert f["accuracy"] == 1.0
    assert outcome(verdict) != "shortcut", (f, verdict)
    assert not verdict["repeating"]     # blobs sit elsewhere in every image: nothing repeats


def test_removal_fills_from_surroundings_not_from_the_region():
    """A model that only reads the region: removing it kills the class whatever the controls do."""
    rng = np.random.default_rng(2)
    cls, other = with_patch(noise(rng, 8)), noise(rng, 8)
    f = measure(region_test((0, 2, 0, 2)), cls, other, patch_model, controls=2)
    assert f["sample"] == 8 and f["other_sample"] == 8 and np.isfinite(f["accuracy_control"])


def test_channel_cast_and_a_model_that_reads_it():
    rng = np.random.default_rng(3)
    base = noise(rng, 60)
    cast = base[:30].copy()
    cast[..., 0] += 0.45

    def red_model(images):
        return softmax2(25 * (images[..., 0].mean((1, 2)) - images[..., 1:].mean((1, 2, 3)) - 0.2))

    t = InterventionTest("c", "label", "red", 1, "channel", "the red channel", channel=0)
    f = measure(t, cast, base[30:], red_model)
    assert f["drop"] > 0.5 and f["control_drop"] < 0.1
    assert f["kept_class"] > 0.8 and f["kept_other"] == 0.0
    assert f["stamp_repeat"] > 0.9 and f["stamp_others"] < 0.3   # a cast on content as varied as the rest
    verdict = judge(f, "channel")
    assert verdict == {"needed": True, "sufficient": True, "transplanted": False, "repeating": True}
    assert outcome(verdict, "channel") == "shortcut" and "transplanted" not in evidence_label(verdict, "channel")


def test_background_texture_with_boxes():
    rng = np.random.default_rng(4)
    n = 20
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    cls = np.zeros((n, SIZE, SIZE, 3), np.float32)
    for i in range(n):
        cls[i] = (((xx + yy + rng.integers(6)) % 6) < 3)[..., None] * 0.8
    other = noise(rng, n)
    box = (10, 10, 22, 22)
    for imgs in (cls, other):
        imgs[:, 10:22, 10:22] = rng.uniform(0.4, 0.6, (n, 1, 1, 3))

    def stripes_model(images):
        g = images.mean(-1)
        energy = np.abs(np.diff(g, axis=2)).mean((1, 2))
        return softmax2(60 * (energy - 0.15))

    t = InterventionTest("b", "label", "striped", 1, "outside_box", "the background")
    f = measure(t, cls, other, stripes_model, class_boxes=[box] * n, other_boxes=[box] * n)
    assert f["drop"] > 0.8 and f["kept_class"] == 1.0 and f["kept_other"] == 0.0
    assert f["stamp_repeat"] > 0.7 and f["stamp_repeat"] - f["stamp_others"] > 0.4
    assert outcome(judge(f, "outside_box"), "outside_box") == "shortcut"


FIGS = {"drop": 0.5, "control_drop": 0.0, "kept_class": 1.0, "kept_other": 0.0, "transplant_flip": 0.9,
        "transplant_control": 0.0, "stamp_repeat": 0.9, "stamp_others": 0.0}


@pytest.mark.parametrize("change, failed", [
    ({"control_drop": 0.3}, "needed"),                                  # removing anything hurts
    ({"kept_class": 0.9, "kept_other": 0.8}, "sufficient"),             # the near-blank bias cancelled
    ({"transplant_control": 0.6}, "transplanted"),                      # pasting anything flips them
    ({"transplant_flip": 0.3}, "transplanted"),
    ({"transplant_control": float("nan")}, "transplanted"),             # no equal area elsewhere: no control
    ({"stamp_others": 0.8}, "repeating"),                               # others carry it too
    ({"stamp_repeat": float("nan"), "stamp_others": float("nan")}, "repeating"),
])
def test_each_test_fails_on_its_own_figures(change, failed):
    verdict = judge(dict(FIGS, **change))
    assert [k for k, ok in verdict.items() if not ok] == [failed]
    assert evidence_label(verdict).endswith(f"not {failed}")


@pytest.mark.parametrize("passed, expected", [
    ({"needed", "sufficient", "transplanted", "repeating"}, "shortcut"),
    ({"needed", "transplanted", "repeating"}, "shortcut"),       # kept alone ambiguous: the transplant decides
    ({"sufficient", "transplanted", "repeating"}, "review"),     # not needed: an aligned object's part can
    ({"needed", "sufficient", "repeating"}, "shortcut"),
    ({"transplanted", "repeating"}, "review"),                   # one causal test: never cleared, reviewed
    ({"needed", "sufficient"}, "review"),                        # an object part the model uses, or a mark
    ({"transplanted"}, "review"),                                #   that does not repeat: a person looks
    ({"needed", "repeating"}, "cleared"),
    ({"sufficient", "repeating"}, "cleared"),
    (set(), "cleared"),
])
def test_the_rule(passed, expected):
    verdict = {k: k in passed for k in ("needed", "sufficient", "transplanted", "repeating")}
    assert outcome(verdict) == expected


def test_transplants_that_flip_while_controls_do_not_make_a_shortcut_when_kept_alone_is_ambiguous():
    """The issue's case: a stamp the model has nothing else to go on for; masking it costs the class, pasting it
    flips 95% of other classes' images while equal areas flip none, kept alone it is called the class as often
    as other classes' images kept the same way (the model's bias on near-blank inputs)."""
    f = {"drop": 0.4, "control_drop": 0.01, "kept_class": 1.0, "kept_other": 1.0, "transplant_flip": 0.95,
         "transplant_control": 0.0, "stamp_repeat": 1.0, "stamp_others": 0.0}
    verdict = judge(f)
    assert not verdict["sufficient"] and verdict["transplanted"]
    assert outcome(verdict) == "shortcut"


@pytest.mark.parametrize("figures, expected", [
    # the zoo's semi-transparent corner watermark on photos (seed 0): nothing repeats pixel for pixel, but
    # the corner alone decides the class
    ({"drop": 0.87, "control_drop": 0.0, "kept_class": 0.92, "kept_other": 0.02, "transplant_flip": 0.69,
      "transplant_control": 0.03}, "shortcut"),
    # the clean shapes' cross arm, the closest an object part came: all three pass, none by DECISIVE
    ({"drop": 0.57, "control_drop": 0.13, "kept_class": 0.53, "kept_other": 0.05, "transplant_flip": 0.55,
      "transplant_control": 0.05}, "review"),
    # a digit's arc (the zoo, seed 1): needed and pasted decisively, removals elsewhere cost nothing, but kept
    # alone only 0.40 more often: one part of the evidence
    ({"drop": 0.66, "control_drop": 0.01, "kept_class": 0.42, "kept_other": 0.02, "transplant_flip": 0.70,
      "transplant_control": 0.0}, "review"),
    # the clean shapes' cross centre (seed 1): removals elsewhere hit the plain background and cost nothing, kept
    # alone 0.52 more often, but equal-area pastes flip 25% too: not alone
    ({"drop": 0.29, "control_drop": 0.0, "kept_class": 0.79, "kept_other": 0.27, "transplant_flip": 0.69,
      "transplant_control": 0.25}, "review"),
    # the zoo's frame on 30% of a photo class (seed 0): no margin of 0.6 but the drop, yet nothing else of the
    # image is needed and kept alone it keeps the class in 0.56 more of its images
    ({"drop": 0.24, "control_drop": 0.01, "kept_class": 0.65, "kept_other": 0.09, "transplant_flip": 0.74,
      "transplant_control": 0.14}, "shortcut"),
])
def test_a_region_that_decides_the_class_alone_is_a_shortcut_without_repeating(figures, expected):
    f = dict(figures, stamp_repeat=0.0, stamp_others=0.0)
    verdict = judge(f)
    assert verdict == {"needed": True, "sufficient": True, "transplanted": True, "repeating": False}
    assert outcome(verdict, "region", f) == expected
    label = evidence_label(verdict, "region", f)
    assert ("each decisive" in label or "nothing else needed" in label) == (expected == "shortcut")
    assert outcome(verdict, "region") == "review"           # no figures, no margins: never a shortcut
    assert outcome(verdict, "outside_box", f) == "review"   # backgrounds and colour: their own rule


def _textures(rng, n, angle):
    """n crops of one oriented texture (noise smoothed along `angle`), each at a random phase."""
    big = rng.normal(size=(n, SIZE * 2, SIZE * 2))
    f = np.fft.fftfreq(SIZE * 2)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    along = fx * np.cos(angle) + fy * np.sin(angle)
    shaped = np.real(np.fft.ifft2(np.fft.fft2(big) * np.exp(-(along / 0.05) ** 2)))
    out = np.empty((n, SIZE, SIZE, 3), np.float32)
    for i in range(n):
        y, x = rng.integers(0, SIZE, 2)
        crop = shaped[i, y:y + SIZE, x:x + SIZE]
        out[i] = ((crop - crop.min()) / np.ptp(crop))[..., None]
    return out


def _falloff(rng, n):
    """n images of isotropic noise whose power falls with frequency as in any photo (no orientation of its own)."""
    f = np.fft.fftfreq(SIZE)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    s = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(n, SIZE, SIZE))) / (0.02 + np.hypot(fy, fx))))
    s = (s - s.min((1, 2), keepdims=True)) / np.ptp(s, (1, 2), keepdims=True)
    return np.repeat(s[..., None], 3, -1).astype(np.float32)


def test_one_texture_behind_a_class_repeats_and_what_all_textures_share_does_not():
    """Background signatures: crops of one texture are alike once what every image shares (power falling with
    frequency) is taken out, while other classes' backgrounds share only that; crops of the same texture
    behind every class are not a class's own."""
    from igaudit.transforms.analysis.skew.repetition import spectra, template_scores
    rng = np.random.default_rng(6)
    masks = np.ones((20, SIZE, SIZE), bool)
    masks[:, 10:22, 10:22] = False
    grass = spectra(_textures(rng, 20, 0.3), masks)
    repeat, carried = template_scores(grass, spectra(_falloff(rng, 20), masks))
    assert repeat > 0.7 and repeat - carried > 0.6      # uncentred, the shared falloff: 0.98 vs 0.74
    repeat, carried = template_scores(grass, spectra(_textures(rng, 20, 0.3), masks))
    assert repeat - carried < 0.3


def test_a_cast_needs_content_as_varied_as_the_rest():
    """Colour: the frame carries the channel (AUC 0.95), but content of one colour (a photo of coffee) is
    content, not a cast."""
    f = {"drop": 0.9, "control_drop": 0.1, "kept_class": 0.9, "kept_other": 0.0, "stamp_repeat": 0.95}
    assert judge(dict(f, stamp_others=0.1), "channel")["repeating"]
    assert not judge(dict(f, stamp_others=0.3), "channel")["repeating"]
    assert judge(dict(f, stamp_others=0.3), "region")["repeating"]     # other kinds: the gap alone


def test_a_cast_on_classes_that_each_have_a_colour_of_their_own():
    """As the zoo's photo crops: each class its own colour. A cast class's images are other classes' content
    with a red cast (red x1.3 + 0.3, green and blue x0.8): they vary in red as much as the rest (variety near 0)
    and their frame is redder than others' (AUC near 1): repeating, though another class is red too (the
    test used to count other classes' own colours against a cast, and cleared it). A class whose content is
    one colour (the green class) varies far less than the rest: content, not a cast."""
    from igaudit.transforms.analysis.skew.repetition import colour_variety
    rng = np.random.default_rng(7)
    tints = np.array([(0.15, 0.0, 0.0), (0.0, 0.15, 0.0), (0.0, 0.0, 0.15), (0.1, 0.1, 0.0), (0.0, 0.1, 0.1),
                      (0.1, 0.0, 0.1)], np.float32)
    others = np.concatenate([noise(rng, 10) + t for t in tints])
    cast = np.clip(others[rng.choice(60, 30)] * np.float32([1.3, 0.8, 0.8]) + np.float32([0.3, 0, 0]), 0, 1)

    def red_model(images):
        return softmax2(25 * (images[..., 0].mean((1, 2)) - images[..., 1:].mean((1, 2, 3)) - 0.25))

    t = InterventionTest("c", "label", "cast", 1, "channel", "the red channel", channel=0)
    f = measure(t, cast, others, red_model)
    assert f["stamp_repeat"] > 0.9 and f["stamp_others"] < 0.2
    verdict = judge(f, "channel")
    assert verdict == {"needed": True, "sufficient": True, "transplanted": False, "repeating": True}
    assert outcome(verdict, "channel", f) == "shortcut"
    green = others[10:20]
    assert colour_variety(green, np.concatenate([others[:10], others[20:]]), 1) > 0.5
    assert colour_variety(cast, others, 0) < 0.2


def test_a_colour_that_repeats_is_a_shortcut_only_when_needed():
    """Colour: repeating (a cast on varied content) and needed is a shortcut; sufficient alone is not (a model
    that reads colour turns anything of the class's colour into the class: the zoo's flower photos, 'sufficient,
    repeating; not needed' on samples whose variety came out under 0.2); a frame that carries the channel on
    content of one colour (not repeating) is a review at best."""
    f = {"drop": 0.6, "control_drop": 0.25, "kept_class": 0.8, "kept_other": 0.0, "stamp_repeat": 0.95,
         "stamp_others": 0.05}
    verdict = judge(f, "channel")
    assert verdict["needed"] and verdict["sufficient"] and verdict["repeating"]
    assert outcome(verdict, "channel", f) == "shortcut"
    flower = dict(f, drop=0.07, control_drop=0.5)
    assert not judge(flower, "channel")["needed"] and outcome(judge(flower, "channel"), "channel", flower) == "review"
    one_colour = dict(f, stamp_others=0.6)
    assert outcome(judge(one_colour, "channel"), "channel", one_colour) == "review"
    assert outcome(judge(one_colour, "channel"), "channel", dict(one_colour, stamp_repeat=0.5)) == "review"
    neither = dict(one_colour, kept_class=0.1)
    assert outcome(judge(neither, "channel"), "channel", dict(neither, stamp_repeat=0.5)) == "cleared"


def test_colour_repetition_is_asked_of_a_labelled_class_only():
    """The images predicted as a class by a model that reads colour are that colour's content from every class:
    varied content under one colour, a cast by construction. The frame test runs for a label grouping only."""
    rng = np.random.default_rng(7)
    others = noise(rng, 40)
    cast = np.clip(noise(rng, 30) * np.float32([1.3, 0.8, 0.8]) + np.float32([0.3, 0, 0]), 0, 1)

    def red_model(images):
        return softmax2(25 * (images[..., 0].mean((1, 2)) - images[..., 1:].mean((1, 2, 3)) - 0.25))

    by_label = measure(InterventionTest("c", "label", "cast", 1, "channel", "red", channel=0), cast, others, red_model)
    predicted = measure(InterventionTest("c", "predicted", "cast", 1, "channel", "red", channel=0), cast, others,
                        red_model)
    assert by_label["stamp_repeat"] > 0.9 and np.isnan(predicted["stamp_repeat"])
    assert by_label["drop"] == predicted["drop"]
    assert outcome(judge(by_label, "channel"), "channel", by_label) == "shortcut"
    assert outcome(judge(predicted, "channel"), "channel", predicted) == "review"
