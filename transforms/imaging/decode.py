"""Raw image bytes -> model-ready float32 pixels (Pillow + numpy, no Beam).

`decode_image` returns an H x W x 3
float32 array in [0, 1] or raises `DecodeError` with a short readable reason;
it never lets a Pillow exception escape, never retries a failed load and
refuses decompression bombs before any pixel buffer is allocated.

Transparent pixels (RGBA, LA, PA, palette or grey with a tRNS/transparency
entry, animated GIF/WebP frames) are composited on black, the same colour as
the "pad" bars. Black is also the default IG baseline, so transparent areas and
padding are "nothing there" to the model and get zero attribution.
"""
from __future__ import annotations

import dataclasses
import io
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

RESIZE_MODES = ("pad", "crop", "stretch")
BACKGROUND = (0, 0, 0)          # for transparency and pad bars; see module docstring
DEFAULT_MAX_PIXELS = 64_000_000

# Everything Pillow (and the codecs under it) has been seen to raise on real,
# broken or hostile files. Bomb errors are handled before this tuple is used.
_PIL_ERRORS = (
    OSError,                    # includes UnidentifiedImageError, zlib/libtiff/libjpeg failures
    ValueError,
    NotImplementedError,
    SyntaxError,                # PNG verify(): bad CRC, broken chunk
    EOFError,
    struct.error,
    IndexError,
    KeyError,                   # unknown modes / rawmodes in some plugins
    TypeError,
    MemoryError,
    zlib.error,
)

_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


class DecodeError(Exception):
    """An input that cannot be turned into pixels; `reason` is short and readable."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _describe(exc: BaseException) -> str:
    message = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _bomb_reason(width: int, height: int, max_pixels: int) -> str:
    return (f"decompression bomb: {width}x{height} = {width * height} pixels "
            f"exceeds limit {max_pixels}")


CHANNELS = (1, 3, 4)


def validate(size, resize: str, max_pixels: int, channels: int = 3) -> tuple[int, int]:
    """Configuration errors are the caller's bug, so they raise ValueError, not DecodeError."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (height, width), got {size!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    if int(max_pixels) < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels!r}")
    if channels not in CHANNELS:
        raise ValueError(f"channels must be one of {CHANNELS}, got {channels!r}")
    return height, width


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Image.open with bomb checks; reads the header only, no pixel buffer yet."""
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise DecodeError(f"decompression bomb ({_describe(e)})") from None
    except Image.DecompressionBombWarning as e:   # raised because of the filter in decode_image
        raise DecodeError(f"decompression bomb ({_describe(e)})") from None
    except UnidentifiedImageError:
        raise DecodeError("not an image or unsupported format") from None
    except NotImplementedError as e:
        raise DecodeError(f"unsupported image variant ({_describe(e)})") from None
    except _PIL_ERRORS as e:
        raise DecodeError(f"corrupt image header ({_describe(e)})") from None
    width, height = im.size
    # Our own check of the declared size: it does not depend on Pillow's global
    # MAX_IMAGE_PIXELS nor on the (process-global, not thread-safe) warnings filter.
    if width * height > max_pixels:
        raise DecodeError(_bomb_reason(width, height, max_pixels))
    if width < 1 or height < 1:
        raise DecodeError(f"corrupt image header (declared size {width}x{height})")
    return im


def _to_8bit(values: np.ndarray, top: float) -> Image.Image:
    """Grey values on a 0..top scale -> an 8-bit L image (negatives and NaN -> 0)."""
    scaled = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=top, neginf=0.0)
    scaled = np.clip(np.rint(scaled * (255.0 / top)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled)


def _high_depth_to_8bit(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit int and float grey -> 8 bits by the range the data really uses.

    Pillow's own convert("L"/"RGB") clips these at 255, which turns a typical
    16-bit scan all white; we scale instead. A grey transparency key becomes alpha.
    """
    values = np.asarray(im)
    if im.mode.startswith("I;16"):
        top = 65535.0                       # i.e. divide by 257
    else:                                   # "I" or "F": smallest usual range that holds the data
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        high = float(finite.max()) if finite.size else 0.0
        tiers = (1.0, 255.0, 65535.0) if im.mode == "F" else (255.0, 65535.0)
        top = next((t for t in tiers if high <= t), max(high, 1.0))
    grey = _to_8bit(values, top)
    key = im.info.get("transparency")
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        alpha = Image.fromarray(np.where(values == key, 0, 255).astype(np.uint8))
        return Image.merge("LA", (grey, alpha))
    return grey


def _to_channels(im: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode -> the model's channels: 8-bit L (grayscale: ITU-R 601 luma of the RGB image),
    RGB, or RGBA (alpha kept); for L and RGB, transparency is composited on BACKGROUND first."""
    if im.mode.startswith("I") or im.mode == "F":
        im = _high_depth_to_8bit(im)
    if channels == 4:
        return im.convert("RGBA")
    rgb = _to_rgb(im)
    return rgb.convert("L") if channels == 1 else rgb


def _to_rgb(im: Image.Image) -> Image.Image:
    """An 8-bit Pillow image -> RGB, transparency composited on BACKGROUND."""
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        # Via RGBA, not straight to RGB: convert("RGB") drops palette alpha and
        # shows whatever colour hides under transparent pixels.
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def _resize(im: Image.Image, height: int, width: int, resize: str) -> Image.Image:
    """Fit an L, RGB or RGBA image to width x height: pad (letterbox), crop (centre) or stretch."""
    w, h = im.size
    # BICUBIC is anti-aliased when shrinking; reducing_gap first box-reduces big
    # images (fast) and is visually indistinguishable at 3.0.
    options = dict(resample=Image.Resampling.BICUBIC, reducing_gap=3.0)
    if resize == "stretch" or (w, h) == (width, height):
        return im.resize((width, height), **options)
    if resize == "crop":
        scale = max(width / w, height / h)
        box_w, box_h = width / scale, height / scale        # the source region that fills the frame
        left, top = (w - box_w) / 2, (h - box_h) / 2
        return im.resize((width, height), box=(left, top, left + box_w, top + box_h), **options)
    scale = min(width / w, height / h)                      # pad
    new_w = min(width, max(1, round(w * scale)))
    new_h = min(height, max(1, round(h * scale)))
    canvas = Image.new(im.mode, (width, height), 0)     # black bars (transparent black for RGBA)
    canvas.paste(im.resize((new_w, new_h), **options), ((width - new_w) // 2, (height - new_h) // 2))
    return canvas


def decode_image(data: bytes, size: tuple[int, int], resize: str = "pad",
                 max_pixels: int = DEFAULT_MAX_PIXELS, channels: int = 3) -> np.ndarray:
    """Decode encoded image bytes to a float32 (H, W, channels) array in [0, 1] (see decode_image_sized)."""
    return decode_image_sized(data, size, resize, max_pixels, channels)[0]


def box_to_model(box, original_size: tuple[int, int], size: tuple[int, int], resize: str) -> tuple:
    """An (x0, y0, x1, y1) box in the original image's pixels -> the same box in model-input
    pixels, following what `resize` did (pad: scaled and offset; crop: scaled, shifted and
    clipped to the frame; stretch: scaled per axis). original_size is (width, height)."""
    w, h = original_size
    height, width = size
    x0, y0, x1, y1 = (float(v) for v in box)
    if resize == "stretch" or (w, h) == (width, height):
        sx, sy, ox, oy = width / w, height / h, 0.0, 0.0
    elif resize == "crop":
        sx = sy = max(width / w, height / h)
        ox, oy = -(w - width / sx) / 2 * sx, -(h - height / sy) / 2 * sy
    else:
        sx = sy = min(width / w, height / h)
        new_w, new_h = min(width, max(1, round(w * sx))), min(height, max(1, round(h * sy)))
        ox, oy = (width - new_w) // 2, (height - new_h) // 2
    mapped = (x0 * sx + ox, y0 * sy + oy, x1 * sx + ox, y1 * sy + oy)
    return (min(max(mapped[0], 0.0), width), min(max(mapped[1], 0.0), height),
            min(max(mapped[2], 0.0), width), min(max(mapped[3], 0.0), height))


def decode_image_sized(data: bytes, size: tuple[int, int], resize: str = "pad",
                       max_pixels: int = DEFAULT_MAX_PIXELS, channels: int = 3) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode encoded image bytes to a float32 (H, W, channels) array in [0, 1], and the decoded
    image's (width, height) before resizing (EXIF orientation applied). channels: 1 (grayscale),
    3 (RGB) or 4 (RGBA), what the model takes.

    size is (height, width). EXIF orientation is applied; animated files give
    their first frame; ICC profiles are ignored (a bad one cannot fail the
    image). Raises DecodeError for empty, non-image, truncated, corrupt or
    oversized (more than max_pixels declared) inputs, and ValueError for a bad
    size / resize / max_pixels argument.
    """
    height, width = validate(size, resize, max_pixels, channels)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A process-wide switch some libraries flip; with it Pillow pads truncated
        # files with grey instead of failing, and we would audit half images.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; igaudit needs it False")
    if not data:
        raise DecodeError("empty file")
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; make it fatal.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        im = _open(data, max_pixels)
        if im.format == "PNG":
            # load() does not check PNG CRCs; only verify() does, and verify()
            # leaves the object unusable, so it runs on its own object.
            try:
                _open(data, max_pixels).verify()
            except _PIL_ERRORS as e:
                raise DecodeError(f"corrupt image data, failed integrity check ({_describe(e)})") from None
        if im.format in ("JPEG", "MPO"):
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is much
            # smaller: far less time and memory. (m, m) keeps both sides >= the
            # target whatever the EXIF rotation does later.
            side = max(height, width)
            try:
                im.draft(None, (side, side))
            except _PIL_ERRORS:
                pass                        # draft is only an optimisation
        try:
            # Exactly one load(): after a failure Pillow's second load() returns
            # silently with a half-decoded image, so a failed object is dropped.
            im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise DecodeError(f"decompression bomb ({_describe(e)})") from None
        except _PIL_ERRORS as e:
            raise DecodeError(f"truncated or corrupt image data ({_describe(e)})") from None
        try:
            # Called only after load(): on PNGs getexif() would otherwise load()
            # by itself. Broken EXIF must not cost the image, so fall back to as-is.
            im = ImageOps.exif_transpose(im)
        except Exception:  # noqa: BLE001 - any EXIF parsing failure means "no rotation"
            pass
        try:
            converted = _to_channels(im, channels)
            original_size = converted.size
            converted = _resize(converted, height, width, resize)
        except _PIL_ERRORS as e:
            raise DecodeError(f"unsupported pixel data ({_describe(e)})") from None
    pixels = np.asarray(converted, dtype=np.float32) / np.float32(255.0)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape != (height, width, channels):  # defensive: a plugin returning odd shapes
        raise DecodeError(f"unsupported pixel data (decoded to shape {pixels.shape})")
    return pixels, original_size


@dataclasses.dataclass(frozen=True)
class DecodeSpec:
    """How an input's bytes become model pixels, the one answer for every stage that decodes: the decode
    stage, the interventions' re-reads and the report's pictures (built once, in the run's plan). size:
    the model's (height, width); channels: 1, 3 or 4; resize: RESIZE_MODES; max_pixels: the bomb guard."""
    size: tuple
    resize: str = "pad"
    max_pixels: int = DEFAULT_MAX_PIXELS
    channels: int = 3

    def __post_init__(self):
        object.__setattr__(self, "size", validate(self.size, self.resize, self.max_pixels, self.channels))
        object.__setattr__(self, "max_pixels", int(self.max_pixels))

    def decode_sized(self, data: bytes) -> tuple[np.ndarray, tuple[int, int]]:
        """(pixels, the decoded image's (width, height) before resizing): `decode_image_sized`."""
        return decode_image_sized(data, self.size, self.resize, self.max_pixels, self.channels)

    def decode(self, data: bytes) -> np.ndarray:
        return self.decode_sized(data)[0]

    def box(self, box, original_size: tuple[int, int]) -> tuple:
        """An object box in the original's pixels, in model pixels (`box_to_model`)."""
        return box_to_model(box, original_size, self.size, self.resize)

    def to_dict(self) -> dict:
        return {"size": list(self.size), "resize": self.resize, "max_pixels": self.max_pixels,
                "channels": self.channels}
