"""Distances between distributions, and a robust z-score (numpy only)."""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

# 1.4826 * MAD estimates the standard deviation of normally distributed data.
MAD_TO_SIGMA = 1.4826

# Floor on the MAD in robust_z, in absolute border-mass units (border mass is a
# share in [0, 1]). With a handful of classes whose border masses agree to the
# third decimal the raw MAD is ~0 and any difference would give an enormous (or
# infinite) z. Differences of a couple of percentage points of attribution mass
# are not meaningful, so the MAD is taken as at least 0.02: with the default
# border_z threshold of 3.5 a class must then sit at least
# 3.5 * 1.4826 * 0.02 ~= 0.10 above the other classes' median to be flagged.
MAD_FLOOR = 0.02


def distribution(values) -> np.ndarray:
    a = np.asarray(values, np.float64).ravel()
    if a.size == 0:
        raise ValueError("empty distribution")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError("a distribution must hold finite, non-negative values")
    total = float(a.sum())
    if total <= 0:
        raise ValueError("a distribution must have positive total mass")
    return a / total


def js_divergence(p, q) -> float:
    """Jensen-Shannon divergence in bits (log base 2), in [0, 1].

    Both inputs are normalised to sum 1 first; zero entries are fine (0 log 0 = 0).
    Symmetric; 0 for identical distributions, 1 for disjoint supports.
    """
    p, q = distribution(p), distribution(q)
    if p.shape != q.shape:
        raise ValueError(f"distributions differ in length: {p.size} vs {q.size}")
    m = 0.5 * (p + q)

    def kl(a):
        nz = a > 0              # where a > 0, m > 0 too
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(min(max(0.5 * kl(p) + 0.5 * kl(q), 0.0), 1.0))


def counts_of(counts) -> dict:
    """Counts as a dict from a dict, a list of (name, count) pairs, or pyarrow-style [{'key','value'}]."""
    if counts is None:
        return {}
    if isinstance(counts, Mapping):
        items = counts.items()
    else:
        items = [(c["key"], c["value"]) if isinstance(c, Mapping) else tuple(c) for c in counts]
    out: dict = {}
    for name, n in items:
        out[name] = out.get(name, 0) + float(n)
    return out


def aligned(p: dict, q: dict) -> tuple[list, np.ndarray, np.ndarray]:
    keys = sorted(set(p) | set(q), key=str)
    return keys, np.array([p.get(k, 0.0) for k in keys]), np.array([q.get(k, 0.0) for k in keys])


def linf_distance(p: Mapping, q: Mapping) -> float:
    """L-infinity distance between two categorical distributions given as counts.

    As TFDV's categorical drift/skew check: counts are normalised to shares,
    a category missing from one side counts 0 there, and the result is the
    largest absolute difference of a category's share, in [0, 1].
    """
    keys, a, b = aligned(counts_of(p), counts_of(q))
    return float(np.max(np.abs(distribution(a) - distribution(b))))


def robust_z(value: float, others: Iterable[float], mad_floor: float = MAD_FLOOR) -> float:
    """(value - median(others)) / (1.4826 * max(MAD(others), mad_floor)).

    The modified z-score of Iglewicz & Hoaglin, with the MAD floored (see
    MAD_FLOOR) so a few near-identical others do not give an infinite z.
    """
    o = np.asarray(list(others), np.float64)
    o = o[np.isfinite(o)]
    if o.size == 0:
        raise ValueError("robust_z needs at least one finite other value")
    median = float(np.median(o))
    mad = float(np.median(np.abs(o - median)))
    return (float(value) - median) / (MAD_TO_SIGMA * max(mad, mad_floor))
