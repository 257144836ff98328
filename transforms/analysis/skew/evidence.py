"""The interventions behind a verdict: forward-only re-scoring of a sample under edits (numpy only).

`measure` takes one candidate's test (`records.InterventionTest`), a sample of the candidate's images
(those that look at the region, `interventions.attends`) and one of other classes' images, and
`predict` (a callable: images (n, H, W, C) in [0, 1] -> class probabilities (n, K); the Beam stage
passes the model's), and returns the figures `verdict.py` judges. Three kinds of test:

* region      a block of attribution-grid cells.
              needed: the region filled from its surroundings (`edits.fill_from_surroundings`), against
              the same removal of `controls` equal-area boxes elsewhere (seeded).
              sufficient: everything but the region set to the samples' mean colour, in the class's
              images and, the same way, in other classes' images.
              transplanted: the region, as the relying images show it, pasted into other classes'
              images (those not already called the class), against equal-area boxes of the same
              images pasted at their own places.
              repeating: `repetition.stamp_scores` on the relying images (those that lose RELY_DROP of
              their probability without the region) against other classes' images; `stamp_others` is
              the larger of the share of other classes' images carrying the stamp and how much one other
              class stamps the region with its own object (`repetition.own_stamps`); asked within
              TOLERANCE and again within IDENTICAL for printed copies (`repetition.repetition`).
* outside_box the background around each image's object box (a manifest's `bbox`). Removed: the
              background set to other classes' mean background colour (a texture, a colour, a brightness
              gone). Control: the same removal on other classes' images, measured on their own predicted
              class. Kept alone:
              the box set to the mean colour. Repeating: texture signatures of the background (log
              spectra pooled by frequency band and orientation, whatever the texture's phase or
              position) as deviations from other classes' backgrounds (`repetition.spectra`,
              `repetition.template_scores`).
* channel     a colour cast in one channel, as the class's images show it: the per-channel gain of
              the class's mean colour over other classes' (`cast_gain`; a cast multiplies each channel,
              as a camera's does). Removed: the class's images divided by the gain (the cast undone, the
              content kept). Control: the same division on other classes' images, measured on their own
              predicted class. Sufficiency: other classes' images multiplied by the gain (the cast
              transplanted), against the same images divided by it. Repeating: the channel's excess in
              the frame (the border band), where a cast shows and an object's colour rarely does: the
              probability that a relying image of the class has more of it than an image of another class
              (AUC); `stamp_others`: how much less the class's images vary in that channel than other
              classes' (`repetition.colour_variety`): a cast sits on content as varied as anyone's, a
              class whose content is of one colour (a photo of coffee) varies 35-95% less. Only for a
              class by label: the images a model that reads colour *predicts* as a class are that colour's
              content from every class, which looks like a cast by construction.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

from igaudit.transforms.analysis.skew import edits
from igaudit.transforms.analysis.skew import repetition as rep

# An image "relies" on the region when removing it costs at least this much of its class probability.
RELY_DROP = 0.1
# ... and the repetition test needs at least this many such images (one image always "repeats" itself).
MIN_RELYING = 4
CONTROLS = 4
SEARCH_MARGIN = 4
FIGURES = ("sample", "other_sample", "relying", "accuracy", "accuracy_removed", "accuracy_control", "confidence",
           "drop", "control_drop", "kept_class", "kept_other", "transplant_flip", "transplant_control",
           "stamp_repeat", "stamp_others", "stamp_pixels")


def _probs(predict: Callable, images: np.ndarray) -> np.ndarray:
    return np.asarray(predict(np.ascontiguousarray(images, np.float32)), np.float64)


def _called(probs: np.ndarray, c: int) -> np.ndarray:
    return probs.argmax(1) == c


def _own_class_drop(predict, before: np.ndarray, edited: np.ndarray) -> float:
    """Mean drop of each image's own predicted-class probability under an edit (the control for
    tests that cannot be moved elsewhere); before: the unedited images' probabilities."""
    if not len(before):
        return math.nan
    after = _probs(predict, edited)
    own = before.argmax(1)
    rows = np.arange(len(before))
    return float(np.mean(before[rows, own] - after[rows, own]))


CAST_FLOOR = 0.02     # a channel's mean below this counts as this (a gain over ~0 means nothing)


def cast_gain(class_images: np.ndarray, other_images: np.ndarray) -> np.ndarray:
    """(C,): the class's mean colour over other classes' mean colour, channel by channel (1 without other
    images): the cast the class's images carry, were their content like other classes' (`edits.scale_channels`)."""
    if not len(other_images):
        return np.ones(class_images.shape[-1], np.float32)
    mine, theirs = (np.maximum(np.asarray(x, np.float64).mean(axis=(0, 1, 2)), CAST_FLOOR)
                    for x in (class_images, other_images))
    return (mine / theirs).astype(np.float32)


def _region(figures: dict, test, class_images, other_images, predict, removal, fill, controls, seed,
            other_classes) -> np.ndarray:
    c = int(test.class_index)
    n, h, w, _ = class_images.shape
    boxes = edits.cells_to_boxes(test.cells, test.grid, h, w)
    drops, figures["accuracy_removed"] = removal(edits.remove(class_images, boxes))
    elsewhere = edits.control_regions(boxes, h, w, controls, seed)
    if elsewhere:
        results = [removal(edits.remove(class_images, b)) for b in elsewhere]
        figures["control_drop"] = float(np.mean([r[0].mean() for r in results]))
        figures["accuracy_control"] = float(np.mean([r[1] for r in results]))
    figures["kept_class"] = float(_called(_probs(predict, edits.keep_only(class_images, boxes, fill)), c).mean())
    relying = drops >= RELY_DROP
    figures["relying"] = int(relying.sum())
    if not len(other_images):
        return drops
    figures["kept_other"] = float(_called(_probs(predict, edits.keep_only(other_images, boxes, fill)), c).mean())
    donors = class_images[relying] if relying.sum() >= MIN_RELYING else class_images
    recipients = other_images[~_called(_probs(predict, other_images), c)]
    if len(recipients):
        figures["transplant_flip"] = float(_called(_probs(predict, edits.transplant(recipients, donors, boxes)),
                                                   c).mean())
        if elsewhere:
            figures["transplant_control"] = float(np.mean([
                _called(_probs(predict, edits.transplant(recipients, donors, b)), c).mean() for b in elsewhere]))
    if relying.sum() >= MIN_RELYING:
        best = (0.0, 0.0, 0)
        for box in boxes:        # a frame: its best side
            best = max(best, rep.repetition(class_images[relying], other_images, other_classes, _around(box, h, w),
                                            MIN_RELYING), key=lambda b: (b[0] - b[1], b[2]))
        figures.update(stamp_repeat=best[0], stamp_others=best[1], stamp_pixels=best[2])
    return drops


def _around(box: tuple, h: int, w: int) -> tuple:
    """The box grown by half its shorter side (at least SEARCH_MARGIN pixels) each way, inside the image: where
    the repetition test looks for the stamp (a region drawn on the attribution grid can be a corner of a
    watermark, or a mark's strongest side; a frame's side stays a strip)."""
    y0, y1, x0, x1 = box
    m = max(SEARCH_MARGIN, min(y1 - y0, x1 - x0) // 2)
    return max(0, y0 - m), min(h, y1 + m), max(0, x0 - m), min(w, x1 + m)


def measure(test, class_images: np.ndarray, other_images: np.ndarray, predict: Callable, *,
            class_boxes: Optional[list] = None, other_boxes: Optional[list] = None,
            other_classes: Optional[list] = None, controls: int = CONTROLS, border: float = 0.1, seed: int = 0) -> dict:
    """The figures of one test (keys FIGURES; NaN where a figure does not apply). other_classes: the class
    of each other image (the repetition test's calibration: do other classes' objects repeat there?)."""
    class_images = np.asarray(class_images, np.float32)
    other_images = np.asarray(other_images, np.float32).reshape((-1,) + class_images.shape[1:])
    c = int(test.class_index)
    figures = {k: math.nan for k in FIGURES}
    n, h, w, _ = class_images.shape
    figures.update(sample=n, other_sample=len(other_images))
    base = _probs(predict, class_images)
    figures.update(accuracy=float(_called(base, c).mean()), confidence=float(base[:, c].mean()))
    both = np.concatenate([class_images, other_images]) if len(other_images) else class_images
    fill = both.mean(axis=(0, 1, 2))

    def removal(edited):
        after = _probs(predict, edited)
        return base[:, c] - after[:, c], float(_called(after, c).mean())

    if test.kind == "region":
        drops = _region(figures, test, class_images, other_images, predict, removal, fill, controls, seed,
                        other_classes)
    elif test.kind == "outside_box":
        # removed: the background set to other classes' mean background colour (texture, colour and brightness
        # gone; the object kept); the control: the same on other classes' images, on their own prediction
        masks = np.array([edits.outside_mask(h, w, b) for b in class_boxes])
        other_masks = np.array([edits.outside_mask(h, w, b) for b in other_boxes]) if len(other_images) else None
        plain = other_images[other_masks].mean(0) if len(other_images) and other_masks.any() else fill
        drops, figures["accuracy_removed"] = removal(edits.fill_mask(class_images, masks, plain))
        figures["kept_class"] = float(_called(_probs(predict, edits.fill_mask(class_images, ~masks, fill)), c).mean())
        relying = drops >= RELY_DROP
        figures["relying"] = int(relying.sum())
        if len(other_images):
            figures["control_drop"] = _own_class_drop(predict, _probs(predict, other_images),
                                                      edits.fill_mask(other_images, other_masks, plain))
            kept = _probs(predict, edits.fill_mask(other_images, ~other_masks, fill))
            figures["kept_other"] = float(_called(kept, c).mean())
            if relying.sum() >= MIN_RELYING:
                figures["stamp_repeat"], figures["stamp_others"] = rep.template_scores(
                    rep.spectra(class_images[relying], masks[relying]), rep.spectra(other_images, other_masks))
    elif test.kind == "channel":
        # removed: the class's cast undone (divided by its gain over other classes' colour); the control: the
        # same division on other classes' images, on their own prediction
        gain = cast_gain(class_images, other_images)
        drops, figures["accuracy_removed"] = removal(edits.scale_channels(class_images, 1.0 / gain))
        relying = drops >= RELY_DROP
        figures["relying"] = int(relying.sum())
        if len(other_images):
            other_probs = _probs(predict, other_images)
            figures["control_drop"] = _own_class_drop(predict, other_probs,
                                                      edits.scale_channels(other_images, 1.0 / gain))
            # the cast transplanted: other classes' images (not already the class) multiplied by the gain,
            # against the same images divided by it
            moved = other_images[other_probs.argmax(1) != c]
            if len(moved):
                figures["kept_class"] = float(_called(_probs(predict, edits.scale_channels(moved, gain)), c).mean())
                figures["kept_other"] = float(_called(_probs(predict, edits.scale_channels(moved, 1.0 / gain)),
                                                      c).mean())
            if relying.sum() >= MIN_RELYING and test.group_by == "label":
                mine = rep.frame_excess(class_images[relying], test.channel, border)
                theirs = rep.frame_excess(other_images, test.channel, border)
                figures["stamp_repeat"] = rep.rank_auc(mine, theirs)
                figures["stamp_others"] = rep.colour_variety(class_images, other_images, test.channel)
    else:
        raise ValueError(f"unknown test kind {test.kind!r}")
    figures["drop"] = float(np.mean(drops))
    return figures
