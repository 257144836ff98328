"""The verdict on a candidate from its intervention figures (`evidence.measure`), and its wording (numpy only).

A candidate is flagged as a shortcut when the region is, all three:

* needed      removing it costs the class at least NEEDED_DROP of its mean probability, and at
              least NEEDED_RATIO times what the control removals cost (equal areas elsewhere;
              for backgrounds and colour, the same edit on other classes' images);
* sufficient  kept alone it is still called the class in SUFFICIENT_GAP more of the class's
              images than of other classes' images kept the same way (the comparison cancels
              the model's own leaning on near-blank inputs); for colour: the class's tint moves
              that many more other images to the class than the reversed tint;
* stamped     it repeats across the images that rely on it (at least STAMP_REPEAT of them carry
              it) and other classes' images lack it (a share at least STAMP_GAP lower); see
              `evidence` for what repeating means for backgrounds and colour (a cast also needs
              content about as varied in colour as other classes': COLOUR_VARIETY_MAX).

Object parts pass one or two of these (a triangle's corner is needed; a '1' stroke kept alone is
still a '1'), rarely all three: strokes, poses and instances vary, a tag does not.
Thresholds: `benchmarks/skew.py` (README, "Verdicts"), set on seed 0 and checked on seed 1.
"""
from __future__ import annotations

import math

NEEDED_DROP = 0.2
NEEDED_RATIO = 2.0
CONTROL_FLOOR = 0.02     # control drops below this count as this (a ratio to ~0 means nothing)
SUFFICIENT_GAP = 0.3
STAMP_REPEAT = 0.7
STAMP_GAP = 0.4
# colour: a cast sits on content that varies in colour (nearly) as much as other classes' content; a class
# whose content is of one colour (coffee, an orange cat) varies 25-70% less (benchmark seed 1, see README).
COLOUR_VARIETY_MAX = 0.2


def _ok(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def judge(f: dict, kind: str = "region") -> dict:
    """{'needed', 'sufficient', 'stamped'}: each True / False (False when its figures are missing). kind: the
    test's (for `channel`, `stamp_others` is the content's lack of colour variety, at most COLOUR_VARIETY_MAX)."""
    drop, control = f.get("drop"), f.get("control_drop")
    needed = (_ok(drop) and _ok(control) and drop >= NEEDED_DROP
              and drop >= NEEDED_RATIO * max(control, CONTROL_FLOOR))
    kept, kept_other = f.get("kept_class"), f.get("kept_other")
    sufficient = _ok(kept) and _ok(kept_other) and kept - kept_other >= SUFFICIENT_GAP
    repeat, others = f.get("stamp_repeat"), f.get("stamp_others")
    stamped = _ok(repeat) and _ok(others) and repeat >= STAMP_REPEAT and repeat - others >= STAMP_GAP
    if kind == "channel":
        stamped = stamped and others <= COLOUR_VARIETY_MAX
    return {"needed": bool(needed), "sufficient": bool(sufficient), "stamped": bool(stamped)}


def evidence_label(tests: dict) -> str:
    """'needed, sufficient, stamped' or e.g. 'needed; not sufficient; not stamped'."""
    if all(tests.values()):
        return "needed, sufficient, stamped"
    return "; ".join(name if ok else f"not {name}" for name, ok in tests.items())


def _pct(x) -> str:
    return "–" if not _ok(x) else f"{100 * x:.0f}%"


def _num(x) -> str:
    return "–" if not _ok(x) else f"{x:.2f}"


def _change(drop) -> str:
    """A probability drop as a signed change: 0.74 -> '−0.74', -0.01 -> '+0.01'."""
    return "–" if not _ok(drop) else f"{-drop:+.2f}".replace("-", "−")


def describe(test, f: dict) -> str:
    """The figures in words, e.g. "masking the top-left 2x2 cells drops triangle accuracy 0.90 -> 0.05 ..."."""
    name = test.class_name
    who = f"{name} images" + ("" if test.cluster is None else f" of cluster {test.cluster}")
    if test.kind == "region":
        parts = [f"masking {test.region} drops {name} accuracy {_num(f['accuracy'])} → {_num(f['accuracy_removed'])} "
                 f"(probability {_change(f['drop'])}); masking equal areas elsewhere: {_num(f['accuracy_control'])} "
                 f"({_change(f['control_drop'])})",
                 f"kept alone it is called {name} in {_pct(f['kept_class'])} of {who} vs "
                 f"{_pct(f['kept_other'])} of other classes' images",
                 f"its pixels repeat almost identically in {_pct(f['stamp_repeat'])} of the {who} that rely on it "
                 f"and in {_pct(f['stamp_others'])} of other classes' images"]
        if _ok(f.get("transplant_flip")):
            parts.append(f"pasting it onto other classes flips {_pct(f['transplant_flip'])} of them to {name}")
    elif test.kind == "outside_box":
        parts = [f"blurring the background around the object boxes drops {name} accuracy {_num(f['accuracy'])} → "
                 f"{_num(f['accuracy_removed'])} (probability {_change(f['drop'])}); other classes' own: "
                 f"{_change(f['control_drop'])}",
                 f"the background alone is called {name} in {_pct(f['kept_class'])} of {who} vs "
                 f"{_pct(f['kept_other'])} of other classes' backgrounds",
                 f"its texture repeats across the {who} that rely on it (spectrum correlation "
                 f"{_num(f['stamp_repeat'])} vs {_num(f['stamp_others'])} in other classes)"]
    else:
        parts = [f"removing colour drops {name} accuracy {_num(f['accuracy'])} → {_num(f['accuracy_removed'])} "
                 f"(probability {_change(f['drop'])}); other classes' own: {_change(f['control_drop'])}",
                 f"moving other classes' images to {name}'s mean colour makes {_pct(f['kept_class'])} of them "
                 f"{name} (the reverse move: {_pct(f['kept_other'])})",
                 f"the cast covers the frame: the {who} that rely on it carry more of the channel there than "
                 f"other classes' images {_pct(f['stamp_repeat'])} of the time, on content "
                 f"{_pct(f['stamp_others'])} less varied in colour than theirs"]
    return "; ".join(parts)
