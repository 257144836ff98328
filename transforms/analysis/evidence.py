"""The interventions behind a verdict: forward-only re-scoring of a sample under edits (numpy only).

`measure` takes one candidate's test (`records.InterventionTest`), a sample of the candidate's
images and one of other classes' images, and `predict` (a callable: images (n, H, W, C) in
[0, 1] -> class probabilities (n, K); the Beam stage passes the model's), and returns the
figures `verdict.py` judges. Three kinds of test:

* region      a block of attribution-grid cells. Removed: filled from its surroundings.
              Control: the same removal on `controls` equal-area boxes elsewhere (seeded).
              Kept alone: everything else set to the samples' mean colour. Stamp: the
              region's pixels that repeat almost identically (`interventions.stamp_scores`):
              the share of relying images that carry them; `stamp_others` the larger of
              the share of other classes' images that carry them and the largest share of
              another class's images relying on the region that carry a stamp of their own
              class there.
* outside_box the background around each image's object box (a manifest's `bbox`).
              Removed: the background blurred (box blur of side H/4: a texture goes, the
              colours stay). Control: the same removal on other classes' images, measured
              on their own predicted class. Kept alone:
              the box set to the mean colour. Stamp: log magnitude spectra of the
              background (a texture's signature, whatever its phase).
* channel     a colour cast in one channel. Removed: desaturated. Control: other classes'
              images desaturated, measured on their own predicted class. Sufficiency:
              other classes' images with their mean colour moved to the class's, against
              the same move reversed. Stamp: the channel's excess in the frame (the
              border band), where a cast shows and an object's colour rarely does: the
              probability that a relying image of the class has more of it than an image
              of another class (AUC); `stamp_others`: how much less the class's images vary
              in that channel than other classes' (`interventions.colour_variety`): a cast
              sits on varied content, a class whose content is of one colour does not.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

from igaudit.transforms.analysis import interventions as iv

# An image "relies" on the region when removing it costs at least this much of its class probability;
# the stamp test looks at those images (on a class carrying a tag on some of its images, the tagged ones).
RELY_DROP = 0.1
# ... and the stamp test needs at least this many such images (one image always "repeats" itself).
MIN_RELYING = 4
CONTROLS = 4
FIGURES = ("sample", "other_sample", "accuracy", "accuracy_removed", "accuracy_control", "confidence", "drop",
           "control_drop", "kept_class", "kept_other", "stamp_repeat", "stamp_others", "transplant_flip")


def _probs(predict: Callable, images: np.ndarray) -> np.ndarray:
    return np.asarray(predict(np.ascontiguousarray(images, np.float32)), np.float64)


def _called(probs: np.ndarray, c: int) -> np.ndarray:
    return probs.argmax(1) == c


def _own_class_drop(predict, images: np.ndarray, edited: np.ndarray) -> float:
    """Mean drop of each image's own predicted-class probability under an edit (the control for
    tests that cannot be moved elsewhere)."""
    if not len(images):
        return math.nan
    before, after = _probs(predict, images), _probs(predict, edited)
    own = before.argmax(1)
    rows = np.arange(len(images))
    return float(np.mean(before[rows, own] - after[rows, own]))


def _own_stamps(mine: np.ndarray, theirs: np.ndarray, classes: Optional[list], relying: np.ndarray) -> float:
    """The largest share of another class's images relying on the region (for their own prediction) that
    carry a stamp of *their own* class there (against all the rest): in a dataset whose objects repeat
    pixel for pixel (normalised low-resolution digits) an object part looks like a stamp, and this says
    so. Only evidence counts: plain sky that another class's photos share is not."""
    if not classes:
        return 0.0
    names = np.asarray(classes, dtype=object)
    best = 0.0
    for name in sorted(set(classes)):
        own = (names == name) & relying
        if own.sum() >= MIN_RELYING:
            rest = np.concatenate([mine, theirs[~own]])
            best = max(best, iv.stamp_scores(theirs[own], rest)[0])
    return best


def measure(test, class_images: np.ndarray, other_images: np.ndarray, predict: Callable, *,
            class_boxes: Optional[list] = None, other_boxes: Optional[list] = None,
            other_classes: Optional[list] = None, controls: int = CONTROLS, border: float = 0.1, seed: int = 0) -> dict:
    """The figures of one test (keys FIGURES; NaN where a figure does not apply). other_classes: the class
    of each other image (the stamp test's calibration: do other classes' objects repeat like a stamp there?)."""
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
        box = iv.cells_to_box(test.cells, test.grid, h, w)
        drops, figures["accuracy_removed"] = removal(iv.fill_from_surroundings(class_images, box))
        boxes = iv.control_boxes(box, h, w, controls, seed)
        if boxes:
            results = [removal(iv.fill_from_surroundings(class_images, b)) for b in boxes]
            figures["control_drop"] = float(np.mean([r[0].mean() for r in results]))
            figures["accuracy_control"] = float(np.mean([r[1] for r in results]))
        figures["kept_class"] = float(_called(_probs(predict, iv.keep_only(class_images, box, fill)), c).mean())
        if len(other_images):
            kept = _probs(predict, iv.keep_only(other_images, box, fill))
            figures["kept_other"] = float(_called(kept, c).mean())
        relying = drops >= RELY_DROP
        if relying.sum() >= MIN_RELYING and len(other_images):
            mine, theirs = iv.region_vectors(class_images[relying], box), iv.region_vectors(other_images, box)
            figures["stamp_repeat"], carried = iv.stamp_scores(mine, theirs)
            own = 0.0
            if other_classes:
                before, after = (_probs(predict, x) for x in (other_images, iv.fill_from_surroundings(other_images, box)))
                rows, pred = np.arange(len(other_images)), before.argmax(1)
                others_rely = before[rows, pred] - after[rows, pred] >= RELY_DROP
                own = _own_stamps(iv.region_vectors(class_images, box), theirs, other_classes, others_rely)
            figures["stamp_others"] = max(carried, own)
            y0, y1, x0, x1 = box
            patch = np.median(class_images[relying][:, y0:y1, x0:x1], axis=0)
            before = _probs(predict, other_images).argmax(1) != c
            if before.any():
                after = _called(_probs(predict, iv.paste(other_images[before], patch, box)), c)
                figures["transplant_flip"] = float(after.mean())
    elif test.kind == "outside_box":
        masks = np.array([iv.outside_mask(h, w, b) for b in class_boxes])
        radius = max(2, h // 8)
        drops, figures["accuracy_removed"] = removal(iv.blur_mask(class_images, masks, radius))
        figures["kept_class"] = float(_called(_probs(predict, iv.fill_mask(class_images, ~masks, fill)), c).mean())
        if len(other_images):
            other_masks = np.array([iv.outside_mask(h, w, b) for b in other_boxes])
            figures["control_drop"] = _own_class_drop(predict, other_images,
                                                      iv.blur_mask(other_images, other_masks, radius))
            kept = _probs(predict, iv.fill_mask(other_images, ~other_masks, fill))
            figures["kept_other"] = float(_called(kept, c).mean())
            relying = drops >= RELY_DROP
            if relying.sum() >= MIN_RELYING:
                figures["stamp_repeat"], figures["stamp_others"] = iv.template_scores(
                    iv.spectra(class_images[relying], masks[relying]), iv.spectra(other_images, other_masks))
    elif test.kind == "channel":
        drops, figures["accuracy_removed"] = removal(iv.desaturate(class_images))
        if len(other_images):
            figures["control_drop"] = _own_class_drop(predict, other_images, iv.desaturate(other_images))
            # colour transfer: each other image's mean colour moved to the class's mean colour (the reverse
            # move, away from it by as much, is the control)
            offset = class_images.mean(axis=(0, 1, 2)) - other_images.mean(axis=(1, 2))
            before = _probs(predict, other_images).argmax(1) != c
            if before.any():
                shift = offset[before][:, None, None, :]
                figures["kept_class"] = float(_called(_probs(predict, iv.tint(other_images[before], shift)), c).mean())
                figures["kept_other"] = float(_called(_probs(predict, iv.tint(other_images[before], -shift)), c).mean())
            relying = drops >= RELY_DROP
            if relying.sum() >= MIN_RELYING:
                mine = iv.frame_excess(class_images[relying], test.channel, border)
                theirs = iv.frame_excess(other_images, test.channel, border)
                figures["stamp_repeat"] = iv.rank_auc(mine, theirs)
                figures["stamp_others"] = iv.colour_variety(class_images, other_images, test.channel)
    else:
        raise ValueError(f"unknown test kind {test.kind!r}")
    figures["drop"] = float(np.mean(drops))
    return figures
