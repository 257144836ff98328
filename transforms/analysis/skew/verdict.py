"""The verdict on a candidate from its intervention figures (`evidence.measure`) (numpy only).

Four tests, each True or False (False when its figures are missing):

* needed        removing the region costs the images that look at it at least NEEDED_DROP of their
                mean probability, and at least NEEDED_RATIO times what equal-area removals elsewhere
                cost (for backgrounds: the same edit on other classes' images; for colour, the cast
                undone: COLOUR_NEEDED_RATIO times what the same division costs other classes);
* sufficient    kept alone, it is still called the class in SUFFICIENT_GAP more of the class's images
                than of other classes' images kept the same way (the comparison cancels the model's
                own leaning on near-blank inputs); for colour: the class's cast (its gain over other
                classes' colour) moves that many more other images to the class than the cast reversed;
* transplanted  pasted into other classes' images, it moves at least TRANSPLANT_FLIP of them to the
                class, and TRANSPLANT_GAP more than equal-area pieces of the same images pasted at
                their own places (region tests only; a region too large to have equal-area places
                elsewhere has no control, and pasting most of an image proves nothing);
* repeating     the images that rely on it carry one pattern (at least REPEAT of them) that other
                classes' images lack (a share at least REPEAT_GAP lower): `repetition.repetition`
                for regions (a stamp, or a printed copy), spectra for backgrounds, the frame's channel
                excess for colour (a cast also needs content about as varied in colour as other
                classes': COLOUR_VARIETY_MAX).

The rule (set on the shortcut zoo, `benchmarks/zoo.py`, seed 0; checked on seed 1):

* **shortcut**, for a region, when
  - it repeats, is needed, and is sufficient or transplanted (the model needs it, and it alone, kept or
    pasted elsewhere, says the class); a copied pattern the model needs counts with a weaker transplant
    too: pasted, it moves STAMP_TRANSPLANT_GAP more of other classes' images than equal-area pastes (a
    tag that jitters is cut by the region's fixed box, and pasted whole in only some of them); or
  - it does not repeat (a semi-transparent watermark over varied content, a tag drawn over the object)
    but is *decisive*: needed, sufficient and transplanted, each by at least DECISIVE (removing it costs
    the images that much of their probability, kept alone it is called the class in that many more of
    the class's images than of others', pasted into other classes' images it turns that many of them
    into the class): the region alone decides the class; or
  - it is needed and transplanted and *nothing else* of the image is: removing as much of the image
    anywhere else costs the images at most ALONE_CONTROL of their probability, pasting equal-area pieces
    of them at their own places flips at most ALONE_FLIP_CONTROL (none, but sampling noise), and kept
    alone it is the class in ALONE_KEPT more of the class's images than of others' (a digit's arc that
    flips transplants but keeps the class alone in only 40% more of its images is one part of the
    evidence; a cross's centre on a plain background, whose other parts no equal-area removal happened
    to hit, flipped 69% while 25% of the control pastes flipped too, in one run; in another, 12%: the
    zoo's one clean-model false flag). Where kept alone cannot tell (other classes' images kept the same
    way are called the class too: the model's leaning on near-blank inputs), this does not hold: in a
    set of '3's and '7's, a '3''s lower arc is needed, nothing else is, and pasted on a '7' it makes a
    '3', exactly as a tag does.
  For a frame (a band along the image's edges) repetition counts only with the transplant: centred
  objects repeat their surroundings in the band (aligned faces' hair and forehead), context the model
  may need, while a frame that is a mark turns other classes' images into the class when pasted round
  them.
  An object is recognised from several of its parts, so one part kept alone or pasted elsewhere is
  weaker (on the zoo's clean models the closest, a cross's arm, reached 0.57, 0.48 and 0.55), and
  removing its other parts costs too.
  For backgrounds (no transplant): needed, sufficient and repeating. For colour: repeating (the frame
  of a labelled class carries the channel on content as varied in colour as other classes': nothing
  but a cast does that) and needed (undoing the cast costs the class COLOUR_NEEDED_RATIO times what the
  same division costs other classes; a class's own colour is not undone that way: its content still
  says the class, while a cast class's content says other classes); sufficiency is not asked, since a
  model that reads colour turns any image of the class's colour into the class, cast or not;
* **review** when it is not a shortcut but the evidence still points at the model's use of the
  region: needed and sufficient, or transplanted; for colour, two of needed, sufficient and a frame
  that carries the channel (on content of one colour, a cast cannot be told from the class's colour);
* **cleared** otherwise: no action.

Object parts pass one or two of these (a triangle's corner is needed; a '1' stroke kept alone is still a
'1'; a '7' bar pasted on a '1' makes a '7'), but not repeating with them: an object's instances differ,
a mark does not (`repetition`).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

from igaudit.transforms.analysis.regions import is_frame
from igaudit.transforms.analysis.skew.interventions import plan_tests, why_untestable
from igaudit.transforms.analysis.skew.rows import TESTED
from igaudit.transforms.analysis.skew.wording import describe, ok

NEEDED_DROP = 0.2
NEEDED_RATIO = 2.0
CONTROL_FLOOR = 0.02     # control drops below this count as this (a ratio to ~0 means nothing)
SUFFICIENT_GAP = 0.3
TRANSPLANT_FLIP = 0.5
TRANSPLANT_GAP = 0.4
DECISIVE = 0.6          # a region decides the class alone: drop, kept-alone gap and transplant flip each this much
ALONE_CONTROL = 0.05    # ... or nothing else is needed: equal-area removals elsewhere cost at most this,
ALONE_KEPT = 0.5        # and kept alone it is the class in this many more of the class's images than of others',
ALONE_FLIP_CONTROL = 0.15   # and equal-area pieces pasted at their own places flip at most this many (none, but noise)
# a stamp that repeats and is needed counts with a weaker transplant: pasted, it moves this many more of other classes'
# images than equal-area pastes (a jittered tag cut by the region's fixed box: 35% against 2%)
STAMP_TRANSPLANT_GAP = 0.3
REPEAT = 0.7
REPEAT_GAP = 0.6
# colour: a cast sits on content that varies in colour (nearly) as much as other classes' content; a class
# whose content is of one colour (coffee, an orange cat) varies less (the zoo's photos, all images: 35-95%).
COLOUR_VARIETY_MAX = 0.2
# colour's control is another edit in kind (other classes' images given this class's cast reversed), which costs
# them their own colours wherever classes differ by colour: undoing a cast must cost the class half as much again
# (the zoo's casts, seed 0: 3.2, 2.5 and 1.06 times; a planted yellow patch's class read as a red cast: 1.13)
COLOUR_NEEDED_RATIO = 1.5
TESTS = ("needed", "sufficient", "transplanted", "repeating")
OUTCOMES = ("shortcut", "review", "cleared")


def judge(f: dict, kind: str = "region") -> dict:
    """{test: True / False} for TESTS (kind: the test's; see the module docstring)."""
    drop, control = f.get("drop"), f.get("control_drop")
    ratio = COLOUR_NEEDED_RATIO if kind == "channel" else NEEDED_RATIO
    needed = (ok(drop) and ok(control) and drop >= NEEDED_DROP
              and drop >= ratio * max(control, CONTROL_FLOOR))
    kept, kept_other = f.get("kept_class"), f.get("kept_other")
    sufficient = ok(kept) and ok(kept_other) and kept - kept_other >= SUFFICIENT_GAP
    flip, flip_control = f.get("transplant_flip"), f.get("transplant_control")
    transplanted = ok(flip) and ok(flip_control) and flip >= TRANSPLANT_FLIP and flip - flip_control >= TRANSPLANT_GAP
    repeat, others = f.get("stamp_repeat"), f.get("stamp_others")
    repeating = ok(repeat) and ok(others) and repeat >= REPEAT and repeat - others >= REPEAT_GAP
    if kind == "channel":
        repeating = repeating and others <= COLOUR_VARIETY_MAX
    return {"needed": bool(needed), "sufficient": bool(sufficient), "transplanted": bool(transplanted),
            "repeating": bool(repeating)}


def decisive(tests: dict, figures: Optional[dict]) -> bool:
    """Whether a region's needed, sufficient and transplanted tests all pass by at least DECISIVE (see the
    module docstring); False without the figures."""
    f = figures or {}
    if not (tests["needed"] and tests["sufficient"] and tests["transplanted"]):
        return False
    drop, kept, other, flip = (f.get(k) for k in ("drop", "kept_class", "kept_other", "transplant_flip"))
    return (all(ok(v) for v in (drop, kept, other, flip))
            and min(drop, kept - other, flip) >= DECISIVE)


def alone(tests: dict, figures: Optional[dict]) -> bool:
    """Whether a region is needed and transplanted while nothing else of the image is needed (equal-area
    removals elsewhere cost at most ALONE_CONTROL, equal-area pastes flip at most ALONE_FLIP_CONTROL) and kept
    alone it keeps the class by at least ALONE_KEPT (see the module docstring); False without the figures."""
    f = figures or {}
    control, kept, other, flip_control = (f.get(k) for k in ("control_drop", "kept_class", "kept_other",
                                                             "transplant_control"))
    return bool(tests["needed"] and tests["transplanted"]
                and all(ok(v) for v in (control, kept, other, flip_control))
                and control <= ALONE_CONTROL and kept - other >= ALONE_KEPT
                and flip_control <= ALONE_FLIP_CONTROL)


def moves(figures: Optional[dict]) -> bool:
    """Whether pasting a region into other classes' images moves at least STAMP_TRANSPLANT_GAP more of them to the
    class than equal-area pastes (a repeating stamp's weaker transplant); False without the figures."""
    f = figures or {}
    flip, control = f.get("transplant_flip"), f.get("transplant_control")
    return bool(ok(flip) and ok(control) and flip - control >= STAMP_TRANSPLANT_GAP)


def outcome(tests: dict, kind: str = "region", figures: Optional[dict] = None, frame: bool = False) -> str:
    """'shortcut', 'review' or 'cleared' (the rule in the module docstring). figures: the test's (a region's
    margins, `decisive`; for colour, whether the frame carries the channel at all); frame: the region is a
    band along the image's edges (its repetition counts only with the transplant)."""
    if kind == "region":
        if tests["repeating"] and tests["needed"] and (
                tests["transplanted"] or (not frame and (tests["sufficient"] or moves(figures)))):
            return "shortcut"
        if decisive(tests, figures) or alone(tests, figures):
            return "shortcut"
    elif kind == "channel":
        if tests["repeating"] and tests["needed"]:
            return "shortcut"
    elif tests["needed"] and tests["sufficient"] and tests["repeating"]:
        return "shortcut"
    if (tests["needed"] and tests["sufficient"]) or tests["transplanted"]:
        return "review"
    if kind == "channel":
        frame = ok((figures or {}).get("stamp_repeat")) and figures["stamp_repeat"] >= REPEAT
        if tests["needed"] + tests["sufficient"] + frame >= 2:
            return "review"
    return "cleared"


def evidence_label(tests: dict, kind: str = "region", figures: Optional[dict] = None) -> str:
    """e.g. 'needed, transplanted, repeating; not sufficient' (the tests that apply to the kind; a decisive
    region's 'needed, sufficient, transplanted, each decisive; not repeating'; a region needed alone:
    '..., transplanted, nothing else needed; not repeating'; a needed stamp that `moves` transplants:
    'needed, repeating, moves transplants; not sufficient, not transplanted')."""
    names = [t for t in TESTS if kind == "region" or t != "transplanted"]
    passed = [t for t in names if tests[t]]
    if kind == "region" and not tests["repeating"] and decisive(tests, figures):
        passed[-1] += ", each decisive"
    elif kind == "region" and not tests["repeating"] and alone(tests, figures):
        passed[passed.index("transplanted")] += ", nothing else needed"
    elif (kind == "region" and tests["repeating"] and tests["needed"] and not tests["transplanted"]
          and not tests["sufficient"] and moves(figures)):
        passed[-1] += ", moves transplants"
    failed = [f"not {t}" for t in names if not tests[t]]
    return "; ".join(part for part in (", ".join(passed), ", ".join(failed)) if part)


def _clean(v):
    """NaN (a figure that does not apply) as None."""
    return None if isinstance(v, float) and math.isnan(v) else v


def apply_verdicts(rows: Sequence[dict], tests: Sequence, figures: dict, class_names: Sequence[str],
                   grid: int, max_tests: Optional[int] = None) -> list[dict]:
    """Rows with their test's figures, the four tests, `outcome`, `flagged` (a shortcut) and the evidence in
    words. `figures`: test_id -> `evidence.measure` output plus the sample's counts (a test missing there
    ran on no images). Candidates of drift metrics keep their flag. max_tests: as `plan_tests`."""
    class_index = {name: i for i, name in enumerate(class_names)}
    _, decided = plan_tests(rows, class_names, grid, max_tests)
    by_id = {t.test_id: t for t in tests}
    out = []
    for i, r in enumerate(rows):
        r = dict(r)
        if r["candidate"] and r["metric"] in TESTED:
            tid = decided.get(i)
            f = figures.get(tid) if tid else None
            if f is None:
                why = why_untestable(r, class_index) or (
                    f"beyond the first {max_tests} tests (analysis.max_tests): raise it to test this one"
                    if i in decided and tid is None else "no image of it could be re-scored")
                r.update(flagged=False, evidence=f"untested: {why}", detail=f"{r['detail']}; not tested: {why}")
            else:
                test = by_id[tid]
                verdict = judge(f, test.kind)
                r.update({k: _clean(v) for k, v in f.items() if k in r}, **verdict)
                r.update(test_id=tid, outcome=outcome(verdict, test.kind, f, frame=is_frame(test.cells or ())),
                         evidence=evidence_label(verdict, test.kind, f), detail=f"{r['detail']}; {describe(test, f)}")
                r["flagged"] = r["outcome"] == "shortcut"
        elif r["candidate"]:
            r["evidence"] = "drift: a change since the reference run (no intervention)"
        out.append(r)
    return out
