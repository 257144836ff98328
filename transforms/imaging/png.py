"""PNG files written directly with zlib (no Pillow on the hot path)."""
from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_COMPRESS_LEVEL = 1  # fast; masks are small and compress well anyway


_PNG_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}   # channels -> PNG colour type: gray, RGB, RGBA


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(array: np.ndarray) -> bytes:
    """uint8 H x W (gray), H x W x 3 (RGB) or H x W x 4 (RGBA) -> PNG file bytes.

    Written directly: 8-bit samples, no interlace, filter "none" on every row, zlib level
    PNG_COMPRESS_LEVEL. On 64 x 64 masks and overlays that is ~3x faster than Pillow's encoder at
    its fastest level (which tries a row filter per row), for files ~5% larger.
    """
    array = np.asarray(array)
    channels = 1 if array.ndim == 2 else (array.shape[2] if array.ndim == 3 else 0)
    if array.dtype != np.uint8 or channels not in _PNG_COLOUR_TYPES:
        raise ValueError(f"png_bytes takes uint8 H x W, H x W x 3 or H x W x 4; got {array.dtype} {array.shape}")
    h, w = array.shape[:2]
    rows = np.zeros((h, 1 + w * channels), np.uint8)   # each row: filter byte 0, then its samples
    rows[:, 1:] = array.reshape(h, w * channels)
    header = struct.pack(">IIBBBBB", w, h, 8, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_COMPRESS_LEVEL)) + _png_chunk(b"IEND", b""))
