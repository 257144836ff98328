"""transforms/imaging/decode.py: limits, bit depths, transparency, resize modes, made here; and, where the shared
malformed-image set is present (../shared/fixtures/images), every case of it (marked shared_fixtures)."""
from __future__ import annotations

import csv
import io
import multiprocessing
import resource
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from igaudit.transforms.imaging.decode import DecodeError, decode_image
from tests.conftest import SHARED_FIXTURES

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = SHARED_FIXTURES
MANIFEST = []       # the shared set's cases; tests marked shared_fixtures are deselected where it is absent
if (FIXTURES / "MANIFEST.csv").is_file():
    with open(FIXTURES / "MANIFEST.csv", newline="") as _f:
        MANIFEST = list(csv.DictReader(_f))

SIZE = (64, 64)
MEMORY_HEADROOM = 1 << 30      # a fixture may use at most 1 GiB of address space beyond the baseline
CASE_TIMEOUT_S = 20            # wall clock for one fixture, including IPC; a hang fails the case
DECODE_BUDGET_S = 3.0          # time decode_image itself may take on one small fixture


def _read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _decode(name: str, size=SIZE, resize: str = "stretch") -> np.ndarray:
    return decode_image(_read(name), size, resize)


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


# --- every fixture, in a memory-capped worker process -----------------------------

def _cap_address_space() -> None:
    """Worker initializer: import the decoder, then cap the address space.

    With RLIMIT_AS set, a decode that tries to allocate gigabytes gets MemoryError
    instead of eating the machine; decode_image turns that into a DecodeError whose
    reason names MemoryError, which the test below treats as a failure.
    """
    import igaudit.transforms.imaging.decode  # noqa: F401  (import first so its mappings are in the baseline)
    with open("/proc/self/status") as status:
        vm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    limit = vm_kb * 1024 + MEMORY_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _decode_in_worker(name: str):
    start = time.perf_counter()
    try:
        result = ("decode", decode_image(_read(name), SIZE, "pad"))
    except DecodeError as e:
        result = ("reject", e.reason)
    return result + (time.perf_counter() - start,)


@pytest.fixture(scope="module")
def worker():
    """One spawned process (not forked: the parent may hold Beam threads) reused for all fixtures."""
    ctx = multiprocessing.get_context("spawn")
    pools = []

    def run(name: str):
        if not pools:
            pools.append(ctx.Pool(1, initializer=_cap_address_space))
        try:
            return pools[0].apply_async(_decode_in_worker, (name,)).get(CASE_TIMEOUT_S)
        except multiprocessing.TimeoutError:
            # A hang or a crashed worker (Pool never returns its task): start afresh next time.
            pools.pop().terminate()
            pytest.fail(f"{name}: no result within {CASE_TIMEOUT_S}s (hang or crash)")

    run("valid_1x1_gray.png")  # pay the spawn + import cost outside the timed cases
    yield run
    for pool in pools:
        pool.terminate()


@pytest.mark.shared_fixtures
@pytest.mark.slow   # each case runs in a spawned worker process
@pytest.mark.parametrize("row", MANIFEST, ids=[r["file"] for r in MANIFEST])
def test_fixture(row, worker):
    outcome, value, seconds = worker(row["file"])
    assert seconds < DECODE_BUDGET_S, f"took {seconds:.2f}s"
    if outcome == "reject":
        assert "MemoryError" not in value, f"tried a huge allocation: {value}"
    if row["expected"] == "decode":
        assert outcome == "decode", f"rejected: {value}"
        assert value.dtype == np.float32
        assert value.shape == (*SIZE, 3)
        assert np.isfinite(value).all()
        assert value.min() >= 0.0 and value.max() <= 1.0
    else:
        assert outcome == "reject", "decoded an input that must be rejected"
        assert isinstance(value, str) and value.strip()


@pytest.mark.shared_fixtures
def test_rejection_reasons_are_specific():
    def reason(name):
        with pytest.raises(DecodeError) as info:
            decode_image(_read(name), SIZE)
        return info.value.reason

    assert reason("malformed_zero_bytes.jpg") == "empty file"
    assert reason("malformed_text_file.jpg") == "not an image or unsupported format"
    assert reason("malformed_bomb_gif.gif").startswith("decompression bomb")
    assert reason("malformed_bomb_warning_only_90mpx.png").startswith("decompression bomb")
    assert "OSError: image file is truncated" in reason("malformed_truncated_baseline.jpg")
    # Pixels intact, only the CRC is wrong: only verify() notices.
    assert "integrity check" in reason("malformed_png_bad_idat_crc.png")


def test_own_pixel_limit_rejects_before_decoding():
    data = _png(Image.new("1", (2000, 1000)))
    with pytest.raises(DecodeError) as info:
        decode_image(data, SIZE, max_pixels=1_000_000)
    assert info.value.reason == (
        "decompression bomb: 2000x1000 = 2000000 pixels exceeds limit 1000000")
    assert decode_image(data, SIZE, max_pixels=2_000_000).shape == (*SIZE, 3)


def test_truncated_png_rejected_and_flag_left_alone():
    data = _png(Image.effect_noise((64, 64), 50).convert("RGB"))
    with pytest.raises(DecodeError):
        decode_image(data[: len(data) // 2], SIZE)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_refuses_to_run_with_load_truncated_images(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        decode_image(_png(Image.new("RGB", (4, 4))), SIZE)


# --- orientation and bit depth ------------------------------------------------------

@pytest.mark.shared_fixtures
@pytest.mark.parametrize("orientation", [3, 5, 6, 8])
def test_exif_orientation_matches_reference(orientation):
    name = f"valid_exif_orientation_{orientation}.jpg"
    reference = _decode("valid_reference_rgb.jpg")
    rotated = _decode(name)
    # Without the transpose the same file differs by ~0.28-0.31 on average, so
    # this threshold really tells applied from ignored orientation.
    unrotated = np.asarray(
        Image.open(FIXTURES / name).convert("RGB").resize((64, 64)), np.float32) / 255
    assert np.abs(unrotated - reference).mean() > 0.15
    assert np.abs(rotated - reference).mean() < 0.04


@pytest.mark.shared_fixtures
def test_exif_orientation_swaps_axes_of_nonsquare_image():
    # 2x1 red pixels with orientation 8 stand 1 wide, 2 high: a centred vertical bar when padded.
    pixels = _decode("valid_exif_orientation_8_nonsquare_2x1.jpg", resize="pad")
    assert pixels[:, 24:40, 0].min() > 0.9
    assert pixels[:, :8].max() == 0.0 and pixels[:, -8:].max() == 0.0


@pytest.mark.shared_fixtures
def test_16bit_tiff_is_scaled_not_clipped_to_white():
    pixels = _decode("valid_i16_gray_clips_to_white.tif")   # values 291..694 of 65535
    source = np.asarray(Image.open(FIXTURES / "valid_i16_gray_clips_to_white.tif"), np.float64) / 65535
    assert pixels.max() < 0.05                               # clipping would give 1.0 everywhere
    assert np.abs(pixels[..., 0] - source).max() <= 1 / 255  # same size: only 8-bit rounding
    assert len(np.unique(pixels)) > 1


def test_32bit_int_and_float_images_scaled_by_range_used():
    ramp = np.tile(np.linspace(0.0, 1.0, 64), (64, 1))

    def tiff(array):
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="TIFF")
        return buf.getvalue()

    as_float = decode_image(tiff(ramp.astype(np.float32)), SIZE, "stretch")
    as_int12 = decode_image(tiff((ramp * 4095).astype(np.int32)), SIZE, "stretch")
    assert np.abs(as_float[..., 0] - ramp).max() <= 1 / 255        # [0,1] floats kept as is
    assert np.abs(as_int12[..., 1] - ramp * 4095 / 65535).max() <= 1 / 255  # 12-bit data in 16-bit range


def test_transparency_composited_on_black():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))          # fully transparent red
    rgba.paste((0, 255, 0, 255), (0, 0, 4, 8))                # opaque green left half
    pixels = decode_image(_png(rgba), (8, 8), "stretch")
    assert np.allclose(pixels[:, :3], [0, 1, 0], atol=0.02)
    assert np.allclose(pixels[:, 5:], 0, atol=0.02)

    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 255, 255, 255, 255])
    palette.info["transparency"] = 1                          # white index is transparent
    assert decode_image(_png(palette), (4, 4), "stretch").max() == 0.0


# --- resize modes ----------------------------------------------------------------

def test_pad_keeps_aspect_with_black_bars():
    pixels = decode_image(_png(Image.new("RGB", (128, 64), "white")), SIZE, "pad")
    assert pixels[:15].max() == 0.0 and pixels[-15:].max() == 0.0   # top and bottom bands
    assert pixels[17:47].min() == 1.0                               # the image, 64x32, centred


def test_crop_fills_frame_from_centre():
    # left quarter red, middle half green, right quarter blue: a centre square is all green
    im = Image.new("RGB", (128, 64), (0, 255, 0))
    im.paste((255, 0, 0), (0, 0, 32, 64))
    im.paste((0, 0, 255), (96, 0, 128, 64))
    pixels = decode_image(_png(im), SIZE, "crop")
    assert np.allclose(pixels[2:-2, 2:-2], [0, 1, 0], atol=0.02)


def test_stretch_maps_whole_image_to_exact_size():
    im = Image.new("RGB", (128, 64), (255, 0, 0))
    im.paste((0, 0, 255), (64, 0, 128, 64))
    pixels = decode_image(_png(im), (32, 48), "stretch")
    assert pixels.shape == (32, 48, 3)
    assert np.allclose(pixels[:, :22], [1, 0, 0], atol=0.02)
    assert np.allclose(pixels[:, 26:], [0, 0, 1], atol=0.02)


@pytest.mark.parametrize("resize", ["pad", "crop", "stretch"])
def test_one_pixel_image(resize):
    pixels = decode_image(_png(Image.new("RGB", (1, 1), (255, 128, 0))), SIZE, resize)
    assert pixels.shape == (*SIZE, 3)
    assert np.allclose(pixels, [1.0, 128 / 255, 0.0], atol=0.01)


@pytest.mark.shared_fixtures
@pytest.mark.parametrize("resize", ["pad", "crop", "stretch"])
def test_extreme_aspect_fixture(resize):
    pixels = _decode("valid_extreme_aspect_798x20_png_content.pbm", resize=resize)
    assert pixels.shape == (*SIZE, 3) and np.isfinite(pixels).all()


def test_bad_arguments_are_value_errors():
    data = _png(Image.new("RGB", (4, 4)))
    with pytest.raises(ValueError):
        decode_image(data, SIZE, "squash")
    with pytest.raises(ValueError):
        decode_image(data, (0, 64))
