"""IG baselines x' and the per-image random streams: plain numpy, no Beam, no TensorFlow.

Every random draw in attribution (random baselines, SmoothGrad noise, expected
gradients' references and alphas) comes from `image_rng(image_id, stream,
sample)`: a generator seeded from the image id, a fixed number per purpose and
the sample index. So a draw depends only on (image, purpose, sample), never on
the batch, its order, the chunk size or the worker that runs it.

Baselines live in pixel space [0, 1], like the images.
"""
from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import numpy as np

from igaudit.transforms.attribution.choices import BASELINE_KINDS

# The named kinds, plus "image": a given baseline image (the config names it by its path).
BASELINES = BASELINE_KINDS + ("image",)


# One stream number per purpose, so e.g. the gaussian baseline of sample 0 and the
# SmoothGrad noise of sample 0 of the same image are independent draws.
STREAMS = {"uniform": 1, "gaussian": 2, "smoothing": 3, "expected_gradients": 4}


def seed_from_id(image_id: str) -> int:
    """A 32-bit seed derived from the image id, so random draws repeat across reruns."""
    return int.from_bytes(hashlib.sha256(image_id.encode("utf-8")).digest()[:4], "little")


def image_rng(image_id: str, stream: str, sample: int = 0) -> np.random.Generator:
    """The random generator for one (image, purpose, sample).

    `uniform` sample 0 keeps the stream igaudit's first `uniform` baseline used
    (`default_rng(seed_from_id(image_id))`), so runs made before multi-sample
    baselines existed stay comparable with new ones.
    """
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; expected one of {', '.join(STREAMS)}")
    seed = seed_from_id(image_id)
    if stream == "uniform" and sample == 0:
        return np.random.default_rng(seed)
    return np.random.default_rng([seed, STREAMS[stream], int(sample)])


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Normalised 1-D Gaussian taps out to `truncate` sigmas (scipy.ndimage's radius rule)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / float(sigma)) ** 2)
    return k / k.sum()


def gaussian_blur(images: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Separable Gaussian blur over the two spatial axes of (..., H, W, C) arrays.

    Edges are mirrored with the edge pixel repeated (numpy "symmetric", scipy.ndimage's
    "reflect"), so a flat image stays flat and no dark rim creeps in. sigma <= 0 is a copy.
    """
    images = np.asarray(images)
    if images.ndim < 3:
        raise ValueError(f"gaussian_blur needs (..., H, W, C) arrays, got shape {images.shape}")
    if not sigma > 0:
        return images.astype(np.float32, copy=True)
    k = gaussian_kernel(sigma, truncate)
    radius = (len(k) - 1) // 2
    out = images.astype(np.float64)
    for axis in (images.ndim - 3, images.ndim - 2):      # H, then W
        n = out.shape[axis]
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="symmetric")
        acc = np.zeros_like(out)
        for j, w in enumerate(k):                        # len(k) shifted, weighted copies
            acc += w * np.take(padded, np.arange(j, j + n), axis=axis)
        out = acc
    return out.astype(np.float32)


def _one_image(array, name: str, shape: tuple) -> np.ndarray:
    if array is None:
        raise ValueError(f"baseline {name!r} needs {'mean_image' if name == 'mean' else 'baseline_image'}")
    a = np.asarray(array, np.float32)
    if a.shape != shape:
        raise ValueError(f"baseline {name!r}: the given image has shape {a.shape}, the images have {shape}; "
                         f"resize it to the model's input size first (imaging.decode.decode_image does)")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"baseline {name!r}: the given image has non-finite pixels")
    return a


def make_baselines(kind: str, images: np.ndarray, image_ids: Sequence[str], *,
                   blur_sigma: Optional[float] = None, noise_stdev: Optional[float] = None,
                   mean_image: Optional[np.ndarray] = None, baseline_image: Optional[np.ndarray] = None,
                   samples: int = 1) -> np.ndarray:
    """Baselines for a batch: float32 (S, N, H, W, C) in [0, 1].

    images: (N, H, W, C) float pixels in [0, 1]; image_ids: N ids (seeds).
    S = `samples` for the random kinds (`uniform`, `gaussian`) and 1 for the
    deterministic ones (averaging IG over identical baselines only repeats work),
    so callers average over axis 0 whatever the kind.

    - black / white: all 0 / all 1;
    - uniform: independent U[0, 1) pixels;
    - gaussian: the input plus N(0, noise_stdev) noise, clipped to [0, 1];
    - blur: the input blurred with a Gaussian of `blur_sigma` pixels;
    - mean: `mean_image` (H, W, C), e.g. the dataset mean from a first pass;
    - image: `baseline_image` (H, W, C), e.g. a file decoded with decode.decode_image.
    Sample s of image i depends only on (image_ids[i], s).
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
    n = images.shape[0]
    if len(image_ids) != n:
        raise ValueError(f"{len(image_ids)} image ids for {n} images")
    if int(samples) < 1:
        raise ValueError(f"baseline samples must be >= 1, got {samples}")
    shape = images.shape[1:]
    if kind == "black":
        return np.zeros((1,) + images.shape, np.float32)
    if kind == "white":
        return np.ones((1,) + images.shape, np.float32)
    if kind == "blur":
        if blur_sigma is None or not blur_sigma >= 0:
            raise ValueError(f"baseline 'blur' needs blur_sigma >= 0, got {blur_sigma}")
        return gaussian_blur(images, blur_sigma)[None]
    if kind == "mean":
        return np.broadcast_to(_one_image(mean_image, kind, shape), (1,) + images.shape).copy()
    if kind == "image":
        return np.broadcast_to(_one_image(baseline_image, kind, shape), (1,) + images.shape).copy()
    if kind == "uniform":
        out = np.empty((samples, n) + shape, np.float32)
        for s in range(samples):
            for i, image_id in enumerate(image_ids):
                out[s, i] = image_rng(image_id, "uniform", s).uniform(size=shape)
        return out
    if kind == "gaussian":
        if noise_stdev is None or not noise_stdev >= 0:
            raise ValueError(f"baseline 'gaussian' needs noise_stdev >= 0, got {noise_stdev}")
        out = np.empty((samples, n) + shape, np.float32)
        for s in range(samples):
            for i, image_id in enumerate(image_ids):
                noise = image_rng(image_id, "gaussian", s).normal(0.0, noise_stdev, size=shape)
                out[s, i] = np.clip(images[i] + noise, 0.0, 1.0)
        return out
    raise ValueError(f"unknown baseline {kind!r}; expected one of {', '.join(BASELINES)}")


def configured_baselines(attribution, images: np.ndarray, image_ids: Sequence[str], *,
                         mean_image: Optional[np.ndarray] = None,
                         baseline_image: Optional[np.ndarray] = None) -> np.ndarray:
    """`make_baselines` as the `attribution:` config section says: its kind (a path: `baseline_image`,
    decoded), blur and noise settings, and `baseline_samples` draws for integrated gradients (other
    methods take one baseline, or none)."""
    a = attribution
    samples = a.baseline_samples if a.method == "integrated_gradients" else 1
    return make_baselines("image" if baseline_image is not None else a.baseline, images, image_ids,
                          blur_sigma=a.blur_sigma, noise_stdev=a.baseline_stdev, mean_image=mean_image,
                          baseline_image=baseline_image, samples=samples)
