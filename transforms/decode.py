"""DecodeImages: raw file bytes -> model-ready pixels, failures to a rejected output (`imaging.decode` does the work)."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from igaudit.transforms.imaging.decode import DecodeError, DecodeSpec
from igaudit.transforms import progress
from igaudit.transforms.records import DecodedImage, ImageBytes, Rejected

REJECTED_TAG = "rejected"
DECODED_TAG = "decoded"


class _DecodeFn(beam.DoFn):
    """ImageBytes -> DecodedImage, or Rejected on the `rejected` tag. Never raises on bad data."""

    def __init__(self, spec: DecodeSpec):
        self._spec = spec
        self._decoded = Metrics.counter("igaudit", "decoded")
        self._rejected = Metrics.counter("igaudit", "rejected_decode")

    def process(self, element: ImageBytes):
        try:
            pixels, original_size = self._spec.decode_sized(element.data)
        except DecodeError as e:
            self._rejected.inc()
            progress.count("rejected")
            yield beam.pvalue.TaggedOutput(
                REJECTED_TAG, Rejected(element.uri, element.image_id, "decode", e.reason))
            return
        self._decoded.inc()
        box = None if element.bbox is None else self._spec.box(element.bbox, original_size)
        yield DecodedImage(element.uri, element.label, element.image_id, pixels, bbox=box,
                           content_hash=element.content_hash)

    def finish_bundle(self):
        progress.flush()


class DecodeImages(beam.PTransform):
    """Decode and resize images for the model.

    Input:  PCollection[ImageBytes].
    Output: DoOutputsTuple with
      - main tag "decoded" (also `result[None]`, or the first when unpacking):
        PCollection[DecodedImage], pixels float32 (H, W, channels) in [0, 1];
      - tag "rejected": PCollection[Rejected] with stage="decode" and a reason.
    Counters (namespace "igaudit"): decoded, rejected_decode.

    spec: how to decode (`imaging.decode.DecodeSpec`: the model's size and channels, the resize mode, and
    the bomb guard: inputs that declare more than max_pixels pixels are rejected before decoding).
    """

    def __init__(self, spec: DecodeSpec, label: str | None = None):
        super().__init__(label)
        self._spec = spec      # checked when built: a bad size fails at graph construction, not on a worker

    def expand(self, images):
        return images | "Decode" >> beam.ParDo(
            _DecodeFn(self._spec)
        ).with_outputs(REJECTED_TAG, main=DECODED_TAG)
