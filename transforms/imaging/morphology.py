"""Binary morphology and connected components on small H x W masks (numpy only), for outline overlays."""
from __future__ import annotations

import numpy as np


def top_fraction(values: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean H x W: the round(fraction * H * W) largest values (ties in raster order), minus zeros.

    Pixels whose value is <= 0 carry no attribution for the polarity and are never selected.
    """
    flat = values.ravel()
    k = int(round(fraction * flat.size))
    keep = np.zeros(flat.size, bool)
    if k > 0:
        keep[np.argsort(-flat, kind="stable")[:k]] = True
    keep &= flat > 0
    return keep.reshape(values.shape)


def _shifted_3x3(mask: np.ndarray, pad: str | bool) -> list[np.ndarray]:
    h, w = mask.shape
    if pad == "edge":
        padded = np.pad(mask, 1, mode="edge")
    else:
        padded = np.pad(mask, 1, mode="constant", constant_values=bool(pad))
    return [padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]


def erode(mask: np.ndarray, outside: str | bool = "edge") -> np.ndarray:
    """Binary erosion with a 3x3 square. `outside`: the image extends by edge replication ("edge"),
    or everything outside is True / False."""
    return np.logical_and.reduce(_shifted_3x3(np.asarray(mask, bool), outside))


def dilate(mask: np.ndarray, outside: str | bool = "edge") -> np.ndarray:
    """Binary dilation with a 3x3 square (see `erode` for `outside`)."""
    return np.logical_or.reduce(_shifted_3x3(np.asarray(mask, bool), outside))


def binary_open(mask: np.ndarray) -> np.ndarray:
    """Erosion then dilation: removes specks and strands thinner than 3 pixels."""
    return dilate(erode(mask))


def binary_close(mask: np.ndarray) -> np.ndarray:
    """Dilation then erosion: fills holes and gaps narrower than 3 pixels."""
    return erode(dilate(mask))


def label_components(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of a boolean H x W mask.

    Returns (labels, sizes): labels is int32 H x W, 0 = background and 1..K numbered in raster order
    of each component's first pixel; sizes[k - 1] is the pixel count of component k. Works on runs
    of each row (union-find over runs), so the Python loop is over runs, not pixels.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8; got {connectivity!r}")
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    labels = np.zeros((h, w), np.int32)
    edges = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    run_rows, run_starts = np.nonzero(edges == 1)
    _, run_ends = np.nonzero(edges == -1)       # exclusive; pairs up with the starts row by row
    n = len(run_starts)
    if n == 0:
        return labels, np.zeros(0, np.int64)
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    slack = 1 if connectivity == 8 else 0
    row_first = np.searchsorted(run_rows, np.arange(h + 1)).tolist()
    starts, ends = run_starts.tolist(), run_ends.tolist()
    for r in range(1, h):
        i, i_end = row_first[r - 1], row_first[r]
        j, j_end = row_first[r], row_first[r + 1]
        while i < i_end and j < j_end:
            if starts[i] < ends[j] + slack and starts[j] < ends[i] + slack:
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)  # the root stays the earliest run: raster-order labels
            if ends[i] <= ends[j]:
                i += 1
            else:
                j += 1
    roots = np.array([find(i) for i in range(n)])
    unique_roots, run_label = np.unique(roots, return_inverse=True)  # roots ascend in raster order
    lengths = run_ends - run_starts
    flat_starts = run_rows * w + run_starts
    offsets = np.repeat(flat_starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
    labels.ravel()[offsets] = np.repeat(run_label + 1, lengths)
    sizes = np.bincount(run_label, weights=lengths, minlength=len(unique_roots)).astype(np.int64)
    return labels, sizes


def top_regions(values: np.ndarray, fraction: float, regions: int = 3, connectivity: int = 8) -> np.ndarray:
    """Boolean H x W: the `regions` largest connected regions of the top `fraction` of `values`,
    after a 3x3 opening (drop specks) and closing (fill pinholes)."""
    cleaned = binary_close(binary_open(top_fraction(values, fraction)))
    labels, sizes = label_components(cleaned, connectivity)
    if not len(sizes):
        return cleaned
    largest = np.argsort(-sizes, kind="stable")[:regions] + 1  # ties: the earlier region
    return np.isin(labels, largest)


def outline_pixels(values: np.ndarray, fraction: float, regions: int = 3, width: int = 1) -> np.ndarray:
    """Boolean H x W: the inner borders (`width` pixels) of `top_regions`; the image frame counts as
    outside, so a region touching the edge is outlined there too."""
    region = top_regions(values, fraction, regions)
    inner = region
    for _ in range(int(width)):
        inner = erode(inner, outside=False)
    return region & ~inner
