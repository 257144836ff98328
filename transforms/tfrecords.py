"""ReadTFRecords: images stored as tf.train.Example records in TFRecord files (TFDS's format), gzip included.

Each matched shard is read by one worker, shards in parallel (matched, reshuffled, then read); the records
are reshuffled again so decoding and attribution spread over the workers whatever the shard sizes. A
record becomes ImageBytes (then decoded like a file), or a Rejected with the reason: a corrupt frame (the
rest of that shard cannot be framed and is not read), a record that is not a tf.train.Example, a missing
image feature, a label index outside the class names.

Feature keys (`input.tfrecord`): the encoded image (`image/encoded`); the label as text
(`image/class/text`), else as an index into the class names (`image/class/label`); the id from
`image/filename`, else the shard's name and the record's position. A record's uri is
`<shard>#<position>`.
"""
from __future__ import annotations

import struct
from typing import Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil

from igaudit.transforms import progress
from igaudit.transforms.read import image_file_for
from igaudit.transforms.records import ImageBytes, Rejected

GZIP_MAGIC = b"\x1f\x8b"
MAX_RECORD_BYTES = 1 << 30      # a frame claiming more is corrupt (and would exhaust memory if believed)


class CorruptFrame(ValueError):
    """The TFRecord framing is broken; nothing after it in the shard can be read."""


def read_frames(handle, limit: int = MAX_RECORD_BYTES) -> Iterable[bytes]:
    """The record payloads of a TFRecord stream, CRCs checked (TensorFlow's framing: length, its masked
    CRC32C, data, its masked CRC32C). Raises CorruptFrame at a broken frame."""
    while True:
        head = handle.read(12)
        if not head:
            return
        if len(head) != 12:
            raise CorruptFrame(f"truncated frame header ({len(head)} of 12 bytes)")
        length, length_crc = struct.unpack("<QI", head)
        if _TFRecordUtil._masked_crc32c(head[:8]) != length_crc:  # noqa: SLF001 - Beam's TFRecord CRC
            raise CorruptFrame("length checksum mismatch")
        if length > limit:
            raise CorruptFrame(f"record length {length} exceeds {limit} bytes")
        body = handle.read(length + 4)
        if len(body) != length + 4:
            raise CorruptFrame(f"truncated record ({len(body)} of {length + 4} bytes)")
        data, data_crc = body[:length], struct.unpack("<I", body[length:])[0]
        if _TFRecordUtil._masked_crc32c(data) != data_crc:  # noqa: SLF001
            raise CorruptFrame("data checksum mismatch")
        yield data


def open_shard(path: str):
    """A TFRecord shard, plain or gzip (told from its first bytes, whatever its name)."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        gzipped = f.read(2) == GZIP_MAGIC
    return FileSystems.open(path, compression_type=CompressionTypes.GZIP if gzipped else
                            CompressionTypes.UNCOMPRESSED)


def _feature(example, key: str):
    feature = example.features.feature
    if key not in feature:
        return None
    kind = feature[key].WhichOneof("kind")
    values = getattr(feature[key], kind).value if kind else []
    return values[0] if len(values) else None


def parse_record(data: bytes, keys, class_names: Optional[Sequence[str]]) -> tuple[bytes, Optional[str], Optional[str]]:
    """(image bytes, label, id or None) of one serialized tf.train.Example; ValueError with the reason.
    class_names None: the label is not needed (an index is not looked up)."""
    from tensorflow.core.example import example_pb2
    example = example_pb2.Example()
    try:
        example.ParseFromString(data)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ValueError(f"not a tf.train.Example ({type(e).__name__})") from None
    image = _feature(example, keys.image)
    if not isinstance(image, bytes) or not image:
        raise ValueError(f"no image bytes in feature '{keys.image}' (set input.tfrecord.image)")
    label = _feature(example, keys.label_text)
    if isinstance(label, bytes):
        label = label.decode("utf-8", "replace")
    elif label is None:
        index = _feature(example, keys.label_index)
        if isinstance(index, int) and class_names is not None:
            if not 0 <= index < len(class_names):
                raise ValueError(f"label index {index} in '{keys.label_index}' is not a class index "
                                 f"(0..{len(class_names) - 1})")
            label = class_names[index]
    name = _feature(example, keys.id)
    return image, (label if isinstance(label, str) else None), (name.decode("utf-8", "replace")
                                                                if isinstance(name, bytes) else None)


def record_image(uri: str, keys) -> bytes:
    """The image bytes of the record at `<shard>#<position>` (a record's uri), read again."""
    shard, _, position = uri.rpartition("#")
    with open_shard(shard) as handle:
        for i, data in enumerate(read_frames(handle)):
            if i == int(position):
                return parse_record(data, keys, None)[0]
    raise ValueError(f"{shard} has no record {position}")


def input_bytes(uri: str, input_config) -> bytes:
    """An input's bytes, read again by its uri: a file, or a TFRecord record (`input.format`)."""
    if input_config.format == "tfrecord":
        return record_image(uri, input_config.tfrecord)
    with FileSystems.open(uri) as f:
        return f.read()


class _ReadShardFn(beam.DoFn):
    def __init__(self, keys, class_names: Sequence[str]):
        self.keys, self.class_names = keys, list(class_names)
        self.read_ok = beam.metrics.Metrics.counter("igaudit", "images_read")
        self.read_failed = beam.metrics.Metrics.counter("igaudit", "rejected_read")

    def _reject(self, uri: str, reason: str):
        self.read_failed.inc()
        progress.count("rejected")
        return beam.pvalue.TaggedOutput("rejected", Rejected(uri, image_file_for(uri).image_id, "read", reason))

    def process(self, shard: str):
        position = 0
        try:
            with open_shard(shard) as handle:
                for position, data in enumerate(read_frames(handle)):
                    uri = f"{shard}#{position}"
                    try:
                        image, label, name = parse_record(data, self.keys, self.class_names)
                    except ValueError as e:
                        yield self._reject(uri, str(e))
                        continue
                    self.read_ok.inc()
                    f = image_file_for(uri, label, name)
                    yield ImageBytes(uri=uri, label=label, image_id=f.image_id, data=image)
                else:
                    return
        except CorruptFrame as e:
            yield self._reject(f"{shard}#{position}", f"corrupt TFRecord frame ({e}); the rest of the shard "
                                                      f"is not read")
        except Exception as e:  # noqa: BLE001 - an unreadable shard is this input's problem, not the run's
            yield self._reject(shard, f"cannot read TFRecord shard ({type(e).__name__}: {str(e)[:200]})")

    def finish_bundle(self):
        progress.flush()


class ReadTFRecords(beam.PTransform):
    """PBegin -> {"images": ImageBytes (one per record), "rejected": Rejected(stage='read')}.

    pattern: a glob of TFRecord shards; keys: `input.tfrecord`; class_names: for labels stored as indices.
    """

    def __init__(self, pattern: str, keys, class_names: Sequence[str]):
        super().__init__()
        self.pattern, self.keys, self.class_names = pattern, keys, list(class_names)

    def expand(self, pbegin):
        read = (pbegin
                | "MatchShards" >> fileio.MatchFiles(self.pattern)
                | "ShardPaths" >> beam.Map(lambda m: m.path)
                | "ReshuffleShards" >> beam.Reshuffle()
                | "ReadRecords" >> beam.ParDo(_ReadShardFn(self.keys, self.class_names)).with_outputs(
                    "rejected", main="images"))
        return {"images": read.images | "ReshuffleRecords" >> beam.Reshuffle(), "rejected": read.rejected}
