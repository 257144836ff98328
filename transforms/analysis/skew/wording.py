"""A test's figures in words, for skew.parquet's `detail`, findings, the console and the report (numpy-free)."""
from __future__ import annotations

import math


def ok(x) -> bool:
    """A figure that was measured (not None, not NaN)."""
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def pct(x) -> str:
    return "–" if not ok(x) else f"{100 * x:.0f}%"


def num(x) -> str:
    return "–" if not ok(x) else f"{x:.2f}"


def change(drop) -> str:
    """A probability drop as a signed change: 0.74 -> '−0.74', -0.01 -> '+0.01'."""
    return "–" if not ok(drop) else f"{-drop:+.2f}".replace("-", "−")


def _who(name: str, f: dict) -> str:
    """"the 12 '3' images that look there (30% of the class)" or "'3' images"."""
    seen, total = f.get("attending"), f.get("class_count")
    if ok(seen) and ok(total) and total:
        return f"the {int(seen)} {name} images that look there ({pct(seen / total)} of the class)"
    return f"{name} images"


def describe(test, f: dict) -> str:
    """The figures in words, e.g. "masking the top-left 2x2 cells drops triangle accuracy 0.90 -> 0.05 ..."."""
    name = test.class_name
    who = _who(name, f)
    if test.kind == "region":
        parts = [f"{who}: masking {test.region} drops accuracy {num(f['accuracy'])} → {num(f['accuracy_removed'])} "
                 f"(probability {change(f['drop'])}); masking equal areas elsewhere: {num(f['accuracy_control'])} "
                 f"({change(f['control_drop'])})",
                 f"kept alone it is called {name} in {pct(f['kept_class'])} of them vs {pct(f['kept_other'])} of "
                 f"other classes' images",
                 f"pasted onto other classes' images it turns {pct(f.get('transplant_flip'))} of them into {name} "
                 f"(equal areas from elsewhere: {pct(f.get('transplant_control'))})"]
        if ok(f.get("stamp_pixels")) and f["stamp_pixels"]:
            parts.append(f"a {int(f['stamp_pixels'])}-pixel pattern repeats in {pct(f['stamp_repeat'])} of the "
                         f"images that rely on it and in {pct(f['stamp_others'])} of other classes' images")
        else:
            parts.append("no pattern repeats across the images that rely on it")
    elif test.kind == "outside_box":
        parts = [f"{who}: replacing the background around the object boxes by other classes' drops accuracy "
                 f"{num(f['accuracy'])} → {num(f['accuracy_removed'])} (probability {change(f['drop'])}); other "
                 f"classes' own: "
                 f"{change(f['control_drop'])}",
                 f"the background alone is called {name} in {pct(f['kept_class'])} of them vs "
                 f"{pct(f['kept_other'])} of other classes' backgrounds",
                 f"its texture repeats across the images that rely on it (spectrum correlation "
                 f"{num(f['stamp_repeat'])} vs {num(f['stamp_others'])} in other classes)"]
    else:
        parts = [f"{who}: undoing the class's colour cast drops accuracy {num(f['accuracy'])} → "
                 f"{num(f['accuracy_removed'])} (probability {change(f['drop'])}); other classes' own: "
                 f"{change(f['control_drop'])}",
                 f"giving other classes' images {name}'s cast makes {pct(f['kept_class'])} of them "
                 f"{name} (the cast reversed: {pct(f['kept_other'])})",
                 f"the cast covers the frame: the images that rely on it carry more of the channel there than "
                 f"other classes' images {pct(f['stamp_repeat'])} of the time, on content {pct(f['stamp_others'])} "
                 f"less varied in colour than other classes'"]
    return "; ".join(parts)
