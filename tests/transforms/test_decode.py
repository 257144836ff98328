"""transforms/decode.py: the DecodeImages stage splits good and bad inputs and accounts for every one."""
import io

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from igaudit.transforms.decode import DecodeImages
from igaudit.transforms.imaging.decode import DecodeSpec
from igaudit.transforms.records import ImageBytes


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError):
        DecodeImages(DecodeSpec((64, 64), resize="squash"))


# --- Beam wiring -----------------------------------------------------------------

def test_decode_images_transform_splits_good_and_bad():
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    good_png = _png(Image.new("RGB", (20, 10), (10, 20, 30)))
    truncated = _png(Image.effect_noise((64, 64), 50).convert("RGB"))[:300]
    inputs = [
        ImageBytes("mem://good1.png", "a", "good1", good_png),
        ImageBytes("mem://good2.png", "b", "good2", _png(Image.new("L", (5, 50), 200))),
        ImageBytes("mem://good3.png", "a", "good3", _png(Image.new("RGBA", (3, 3)))),
        ImageBytes("mem://empty.png", "a", "empty", b""),
        ImageBytes("mem://text.png", "a", "text", b"not an image"),
        ImageBytes("mem://trunc.png", "b", "trunc", truncated),
    ]

    pipeline = TestPipeline()
    result = pipeline | beam.Create(inputs) | DecodeImages(DecodeSpec((16, 16), resize="pad"))
    decoded, rejected = result                       # main output first
    assert_that(
        decoded | "Describe decoded" >> beam.Map(
            lambda d: (type(d).__name__, d.image_id, d.label, d.pixels.shape, d.pixels.dtype.name)),
        equal_to([
            ("DecodedImage", "good1", "a", (16, 16, 3), "float32"),
            ("DecodedImage", "good2", "b", (16, 16, 3), "float32"),
            ("DecodedImage", "good3", "a", (16, 16, 3), "float32"),
        ]),
        label="decoded")
    assert_that(
        rejected | "Describe rejected" >> beam.Map(
            lambda r: (type(r).__name__, r.image_id, r.uri, r.stage, bool(r.reason.strip()))),
        equal_to([
            ("Rejected", "empty", "mem://empty.png", "decode", True),
            ("Rejected", "text", "mem://text.png", "decode", True),
            ("Rejected", "trunc", "mem://trunc.png", "decode", True),
        ]),
        label="rejected")

    run = pipeline.run()
    run.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in run.metrics().query(MetricsFilter().with_namespace("igaudit"))["counters"]}
    assert counters == {"decoded": 3, "rejected_decode": 3}


# --- fuzzed inputs ---------------------------------------------------------------

def _seed_images() -> list[bytes]:
    rng = np.random.default_rng(7)
    out = []
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


def mutations(seeds: list[bytes], n: int, seed: int = 0) -> list[bytes]:
    """Truncations, flipped bytes, spliced headers and inserted junk, reproducible from the seed."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        data = bytearray(seeds[i % len(seeds)])
        kind = i % 4
        if kind == 0:
            data = data[: int(rng.integers(0, len(data)))]
        elif kind == 1:
            for pos in rng.integers(0, len(data), size=int(rng.integers(1, 12))):
                data[pos] ^= int(rng.integers(1, 256))
        elif kind == 2:
            other = seeds[int(rng.integers(0, len(seeds)))]
            cut = int(rng.integers(1, min(len(data), len(other))))
            data = other[:cut] + data[cut:] if rng.random() < 0.5 else data[:cut] + other[cut:]
        else:
            pos = int(rng.integers(0, len(data)))
            data = data[:pos] + bytes(rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8)) + data[pos:]
        out.append(bytes(data))
    return out


def test_fuzzed_images_through_the_decode_stage_are_all_accounted_for():
    inputs = [ImageBytes(f"mem://{i}", "x", f"id{i}", data) for i, data in enumerate(mutations(_seed_images(), 300))]
    with BeamTestPipeline() as p:
        result = p | beam.Create(inputs) | DecodeImages(DecodeSpec((16, 16)))
        decoded_ids = result.decoded | "DecodedIds" >> beam.Map(lambda d: d.image_id)
        rejected_ids = result.rejected | "RejectedIds" >> beam.Map(lambda r: r.image_id)
        all_ids = (decoded_ids, rejected_ids) | beam.Flatten()
        assert_that(all_ids, equal_to([f"id{i}" for i in range(len(inputs))]))
        assert_that(result.rejected | "Reasons" >> beam.Map(lambda r: bool(r.reason) and r.stage == "decode")
                    | beam.Distinct(), equal_to([True]), label="reasons")
