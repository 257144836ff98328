"""DecodeImages: raw file bytes -> model-ready pixels, failures to a rejected output (`imaging.decode` does the work)."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from igaudit.transforms.imaging.decode import DEFAULT_MAX_PIXELS, DecodeError, box_to_model, decode_image_sized, validate
from igaudit.transforms import progress
from igaudit.transforms.records import DecodedImage, ImageBytes, Rejected

REJECTED_TAG = "rejected"
DECODED_TAG = "decoded"


class _DecodeFn(beam.DoFn):
    """ImageBytes -> DecodedImage, or Rejected on the `rejected` tag. Never raises on bad data."""

    def __init__(self, size: tuple[int, int], resize: str, max_pixels: int, channels: int):
        self._size = size
        self._resize = resize
        self._max_pixels = max_pixels
        self._channels = channels
        self._decoded = Metrics.counter("igaudit", "decoded")
        self._rejected = Metrics.counter("igaudit", "rejected_decode")

    def process(self, element: ImageBytes):
        try:
            pixels, original_size = decode_image_sized(element.data, self._size, self._resize,
                                                       self._max_pixels, self._channels)
        except DecodeError as e:
            self._rejected.inc()
            progress.count("rejected")
            yield beam.pvalue.TaggedOutput(
                REJECTED_TAG, Rejected(element.uri, element.image_id, "decode", e.reason))
            return
        self._decoded.inc()
        box = None if element.bbox is None else box_to_model(element.bbox, original_size, self._size, self._resize)
        yield DecodedImage(element.uri, element.label, element.image_id, pixels, bbox=box)

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

    size is the model input (height, width) and channels its channel count (1, 3 or 4); resize
    is "pad" (keep aspect, black bars), "crop" (keep aspect, centre crop) or "stretch"; inputs
    that declare more than max_pixels pixels are rejected before decoding.
    """

    def __init__(self, size: tuple[int, int], resize: str = "pad",
                 max_pixels: int = DEFAULT_MAX_PIXELS, label: str | None = None, *, channels: int = 3):
        super().__init__(label)
        # Fail at graph construction, not on the first element on a worker.
        self._size = validate(size, resize, max_pixels, channels)
        self._resize = resize
        self._max_pixels = int(max_pixels)
        self._channels = channels

    def expand(self, images):
        return images | "Decode" >> beam.ParDo(
            _DecodeFn(self._size, self._resize, self._max_pixels, self._channels)
        ).with_outputs(REJECTED_TAG, main=DECODED_TAG)
