"""Colour maps for masks and overlays: 256 x 3 uint8 tables, and looking values up in them."""
from __future__ import annotations

import numpy as np


def table(anchors, positions=None) -> np.ndarray:
    """Anchor colours at `positions` in [0, 1] (default: evenly spaced) -> 256 x 3 uint8."""
    anchors = np.asarray(anchors, np.float64)
    if positions is None:
        positions = np.linspace(0, 1, len(anchors))
    x = np.linspace(0, 1, 256)
    return np.stack([np.interp(x, positions, anchors[:, c]) for c in range(3)], axis=1).astype(np.uint8)


# Matplotlib's inferno sampled at 9 evenly spaced points; interpolated to 256 entries.
_INFERNO_ANCHORS = np.array([
    (0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85),
    (227, 89, 51), (249, 140, 10), (249, 201, 50), (252, 255, 164)], np.float64)
INFERNO = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_INFERNO_ANCHORS)),
                              _INFERNO_ANCHORS[:, c]) for c in range(3)], axis=1).astype(np.uint8)

# Matplotlib's viridis (CC0, van der Walt & Smith) at entries 0, 8, ..., 248, 255 of its 256-entry
# table; linear interpolation between them stays within 2 levels of the original.
_VIRIDIS_INDICES = np.r_[np.arange(0, 256, 8), 255]
_VIRIDIS_ANCHORS = np.array([
    (68, 1, 84), (71, 13, 96), (72, 24, 106), (72, 35, 116), (71, 45, 123), (69, 55, 129), (66, 64, 134),
    (62, 73, 137), (59, 82, 139), (55, 91, 141), (51, 99, 141), (47, 107, 142), (44, 114, 142), (41, 122, 142),
    (38, 130, 142), (35, 137, 142), (33, 145, 140), (31, 152, 139), (31, 160, 136), (34, 167, 133),
    (40, 174, 128), (50, 182, 122), (63, 188, 115), (78, 195, 107), (94, 201, 98), (112, 207, 87),
    (132, 212, 75), (152, 216, 62), (173, 220, 48), (194, 223, 35), (216, 226, 25), (236, 229, 27),
    (253, 231, 37)], np.float64)
VIRIDIS = table(_VIRIDIS_ANCHORS, _VIRIDIS_INDICES / 255.0)

# Diverging maps: anchors from the negative end through the neutral middle to the positive end.
# pink_green is ColorBrewer PiYG (matplotlib's "PiYG"): pink = negative, green = positive.
_PINK_GREEN_ANCHORS = np.array([
    (142, 1, 82), (197, 27, 125), (222, 119, 174), (241, 182, 218), (253, 224, 239), (247, 247, 247),
    (230, 245, 208), (184, 225, 134), (127, 188, 65), (77, 146, 33), (39, 100, 25)], np.float64)
# red_green is Captum's "RdWhGn" (red, white, green): red = negative, green = positive.
_RED_GREEN_ANCHORS = np.array([(255, 0, 0), (255, 255, 255), (0, 128, 0)], np.float64)


def _diverging_table(anchors: np.ndarray) -> np.ndarray:
    """256 entries; 0..127 run negative end -> neutral and 128..255 neutral -> positive end.

    Entries 127 and 128 are both the neutral colour, so a signed value v in [-1, 1] looked up at
    round(127.5 * (1 + v)) is neutral at v = 0 and the two halves mirror each other.
    """
    mid = len(anchors) // 2
    half = np.linspace(0, 1, 128)

    def ramp(part):
        pos = np.linspace(0, 1, len(part))
        return np.stack([np.interp(half, pos, part[:, c]) for c in range(3)], axis=1)

    return np.concatenate([ramp(anchors[:mid + 1]), ramp(anchors[mid:])]).astype(np.uint8)


PINK_GREEN = _diverging_table(_PINK_GREEN_ANCHORS)
RED_GREEN = _diverging_table(_RED_GREEN_ANCHORS)

COLORMAPS = {"inferno": INFERNO, "viridis": VIRIDIS, "pink_green": PINK_GREEN, "red_green": RED_GREEN}
CMAP_CHOICES = ("auto",) + tuple(COLORMAPS)
DIVERGING = ("pink_green", "red_green")


def resolve_cmap(cmap: str, polarity: str) -> str:
    """The colour map `cmap` names; auto: inferno, or pink_green for the signed polarity `both`."""
    if cmap == "auto":
        return "pink_green" if polarity == "both" else "inferno"
    return cmap


def heatmap(mask: np.ndarray, cmap: np.ndarray = INFERNO) -> np.ndarray:
    """[0, 1] mask -> uint8 H x W x 3 colours."""
    return np.take(cmap, table_index(mask), axis=0)   # np.take: ~4x faster than cmap[index] here


def table_index(mask: np.ndarray) -> np.ndarray:
    return np.round(mask * 255.0).astype(np.intp)
