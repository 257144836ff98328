"""Which class each attribution explains (`attribution.target`): plain Python/numpy, no Beam.

Forms:
  predicted        the model's top class (the default)
  label            the image's own label (images whose label the model does not know get -1)
  <int> | "<int>"  a fixed class index
  <name>           a fixed class by name (validated against the class names)
  top_k (+ k)      the k most probable classes: k attributions per image

`parse_target` validates once, at configuration time (ValueError with a message
that names `attribution.target` and the fix); `resolve_targets` turns the spec
into per-image class indices for one batch.
"""
from __future__ import annotations

import dataclasses
import difflib
import numbers
from typing import Optional, Sequence

import numpy as np

TARGET_KINDS = ("predicted", "label", "class", "top_k")
_FIELD = "attribution.target"


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    kind: str          # one of TARGET_KINDS
    index: int = -1    # the class, for kind == "class"
    k: int = 1         # targets per image: k for top_k, else 1

    @property
    def per_image(self) -> int:
        return self.k if self.kind == "top_k" else 1


def _class_count(class_names: Optional[Sequence[str]], num_classes: Optional[int]) -> Optional[int]:
    if class_names is not None and num_classes is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {num_classes} outputs")
    return num_classes if num_classes is not None else (len(class_names) if class_names is not None else None)


def _check_index(index: int, count: Optional[int], shown: object) -> int:
    if index < 0 or (count is not None and index >= count):
        span = f"0..{count - 1}" if count else "none"
        raise ValueError(f"{_FIELD}: class index {shown!r} is out of range; the model has "
                         f"{count if count is not None else 'an unknown number of'} classes ({span})")
    return index


def parse_target(target, class_names: Optional[Sequence[str]] = None, *, k: Optional[int] = None,
                 num_classes: Optional[int] = None) -> TargetSpec:
    """Validate `attribution.target` (and `attribution.k` for top_k) into a TargetSpec.

    A string is looked up as a keyword first (predicted, label, top_k), then as a
    class name, then as a decimal index, so a class literally named "3" wins over
    index 3. Raises ValueError naming the field for an unknown name, an index out
    of range, or a bad k.
    """
    count = _class_count(class_names, num_classes)
    if isinstance(target, bool) or target is None:
        raise ValueError(f"{_FIELD} must be predicted, label, top_k, a class index or a class name; "
                         f"got {target!r}")
    if isinstance(target, numbers.Integral):
        return TargetSpec("class", _check_index(int(target), count, target))
    if not isinstance(target, str):
        raise ValueError(f"{_FIELD} must be predicted, label, top_k, a class index or a class name; "
                         f"got {target!r}")
    if target in ("predicted", "label"):
        return TargetSpec(target)
    if target == "top_k":
        if k is None:
            k = 1
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"attribution.k must be a positive integer for target top_k, got {k!r}")
        if count is not None and k > count:
            raise ValueError(f"attribution.k = {k} is more than the model's {count} classes")
        return TargetSpec("top_k", k=int(k))
    names = list(class_names) if class_names is not None else []
    if target in names:
        return TargetSpec("class", names.index(target))
    text = target.strip()
    if text.lstrip("-").isdigit():
        return TargetSpec("class", _check_index(int(text), count, target))
    hint = ""
    close = difflib.get_close_matches(target, names, n=1)
    if close:
        hint = f" (did you mean {close[0]!r}?)"
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    known = f"; class names: {shown}" if names else "; no class names are known (set model.class_names)"
    raise ValueError(f"{_FIELD}: unknown class name {target!r}{hint}; expected predicted, label, top_k, "
                     f"a class index or a class name{known}")


def resolve_targets(spec: TargetSpec, probabilities: np.ndarray,
                    label_index: Optional[np.ndarray] = None) -> np.ndarray:
    """Per-image class indices, int64 (N, spec.per_image).

    probabilities: (N, K) model outputs (any monotone score works: logits too);
    label_index: (N,) the label's class index, -1 when unknown (needed for "label").
    top_k columns are in decreasing probability, ties to the lower index. For
    "label", an image whose label is unknown gets -1: the caller rejects it.
    """
    probabilities = np.asarray(probabilities)
    n, num = probabilities.shape
    if spec.kind == "predicted":
        return probabilities.argmax(axis=1).astype(np.int64)[:, None]
    if spec.kind == "label":
        if label_index is None:
            raise ValueError("target 'label' needs the images' label indices")
        li = np.asarray(label_index, np.int64).reshape(n)
        return np.where((li >= 0) & (li < num), li, -1)[:, None]
    if spec.kind == "class":
        _check_index(spec.index, num, spec.index)
        return np.full((n, 1), spec.index, np.int64)
    if spec.kind == "top_k":
        if spec.k > num:
            raise ValueError(f"attribution.k = {spec.k} is more than the model's {num} classes")
        return np.argsort(-probabilities, axis=1, kind="stable")[:, :spec.k].astype(np.int64)
    raise ValueError(f"unknown target kind {spec.kind!r}")


def target_rows(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten (N, k) targets into rows: (image_index, target), image-major.

    Run any engine on `images[image_index]` with `targets=target` to get one
    attribution per (image, target); random draws stay per image id, so every
    target of an image sees the same baselines and noise.
    """
    targets = np.asarray(targets, np.int64)
    n, k = targets.shape
    return np.repeat(np.arange(n), k), targets.reshape(-1)
