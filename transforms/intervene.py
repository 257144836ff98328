"""Intervene: forward-only re-scoring of a bounded sample per candidate, under the edits that decide it.

The candidates' tests (`records.InterventionTest`, one list) arrive as a side input. Each images row is
offered to every test it belongs to: as one of the candidate's images (its class under the test's
group_by; `attending` too when its attribution looks at the test's region, `analysis.skew.attends`) or
as one of another class's. Per (test, role) the images are counted and a bounded sample is kept (the
`sample` images with the smallest hash of their id: the same images on any runner and worker count). A
test re-scores the class's images that look at its region, or all of them when fewer than
MIN_ATTENDING do. The sampled files are read and decoded again (the pixels never crossed a shuffle; the
attribution stage kept them fused), and a RunInference stage runs `analysis.skew.measure` with the
model's forward pass, one test per call, batched over the test's images.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, RunInference

from igaudit.transforms import progress
from igaudit.transforms.analysis.skew import attends, measure
from igaudit.transforms.cluster import sample_key
from igaudit.transforms.imaging.decode import DecodeError, DecodeSpec
from igaudit.transforms.records import InterventionTest, TestSample
from igaudit.transforms.tfrecords import input_bytes

log = logging.getLogger("igaudit")
CLASS, ATTENDING, OTHER = "class", "attending", "other"
FORWARD_CHUNK = 64
MIN_ATTENDING = 4


def roles(row: dict, tests: Sequence[InterventionTest]) -> Iterable[tuple[tuple[str, str], tuple]]:
    """((test_id, role), (sample key, uri, image_id, bbox, class)) for every test the row can serve: CLASS (and
    ATTENDING when it looks at the region) for its own class's tests, OTHER for other classes' tests."""
    for t in tests:
        if t.kind == "outside_box" and not row.get("bbox"):
            continue
        name = row["label"] if t.group_by == "label" else row["predicted_name"]
        if name is None:
            continue
        item = (sample_key(row["image_id"]), row["uri"], row["image_id"], row.get("bbox"), name)
        if name == t.class_name:
            yield (t.test_id, CLASS), item
            if attends(row, t):
                yield (t.test_id, ATTENDING), item
        else:
            yield (t.test_id, OTHER), item


CACHE_BYTES = 64 * 2 ** 20     # input bytes a worker keeps for the tests' samples (`_ReadSampleFn._bytes`)


class _ReadSampleFn(beam.DoFn):
    """(test_id, [(role, items)]) -> TestSample: the sampled files read and decoded as the attribution
    stage decoded them. A file that no longer reads or decodes is left out."""

    def __init__(self, spec: DecodeSpec, input_config):
        self.spec, self.input_config = spec, input_config

    def setup(self):
        self._cache, self._cached = OrderedDict(), 0

    def _bytes(self, uri: str) -> bytes:
        """The file's bytes, from the worker's cache when a test read it already: the tests' samples draw on the
        same classes' images, and on a bucket each read is two requests (measured with py-spy: a third of an
        s3 run went to these reads, `benchmarks/buckets.py`). At most CACHE_BYTES are kept, the last used."""
        data = self._cache.get(uri)
        if data is not None:
            self._cache.move_to_end(uri)
            return data
        data = input_bytes(uri, self.input_config)
        self._cache[uri] = data
        self._cached += len(data)
        while self._cached > CACHE_BYTES and len(self._cache) > 1:
            self._cached -= len(self._cache.popitem(last=False)[1])
        return data

    def _decode(self, items) -> tuple[list, list, list]:
        pixels, boxes, names = [], [], []
        for _, uri, image_id, bbox, name in sorted(items, key=lambda i: i[2]):
            try:
                pixels.append(self.spec.decode(self._bytes(uri)))
            except (OSError, ValueError, DecodeError) as e:
                log.warning("igaudit: intervention sample %s skipped: %s", uri, e)
                continue
            boxes.append(bbox)
            names.append(name)
        return pixels, boxes, names

    def process(self, element, tests, counts):
        test_id, groups = element
        test = {t.test_id: t for t in tests}[test_id]
        groups = dict(groups)
        attending = counts.get((test_id, ATTENDING), 0)
        mine = ATTENDING if attending >= MIN_ATTENDING else CLASS
        class_pixels, class_boxes, _ = self._decode(groups.get(mine, []))
        other_pixels, other_boxes, other_classes = self._decode(groups.get(OTHER, []))
        if not class_pixels:
            return
        shape = (0,) + tuple(self.spec.size) + (self.spec.channels,)
        yield TestSample(test, np.stack(class_pixels),
                         np.stack(other_pixels) if other_pixels else np.zeros(shape, np.float32),
                         class_boxes, other_boxes, other_classes, attending=attending,
                         class_count=counts.get((test_id, CLASS), 0))


class InterventionHandler(ModelHandler[TestSample, Any, Any]):
    """TestSample -> (test_id, figures): the model loaded once per worker, forward passes only.

    model: the config's `model` section; border: `analysis.border` (the frame of the colour test).
    """

    def __init__(self, model, border: float):
        super().__init__()
        self.model_config, self.border = model, border

    def load_model(self):
        from igaudit.transforms.attribution.engine import GradientEngine
        from igaudit.transforms.attribution.models import enable_gpu_memory_growth, load_classifier
        enable_gpu_memory_growth()
        m = self.model_config
        classifier = load_classifier(m)      # the attribution stage's own copy when in the same process
        return GradientEngine(classifier, classifier.input_shape, output=m.output, score="probability",
                              chunk_size=FORWARD_CHUNK)

    def run_inference(self, batch: Sequence[TestSample], model, inference_args: Optional[dict] = None) -> Iterable:
        def predict(images):
            return model.probabilities(model.forward(images))

        for s in batch:
            figures = measure(s.test, s.class_pixels, s.other_pixels, predict, class_boxes=s.class_boxes,
                              other_boxes=s.other_boxes, other_classes=s.other_classes, border=self.border)
            progress.count("tests")
            yield s.test.test_id, dict(figures, attending=s.attending, class_count=s.class_count)
        progress.flush()

    def batch_elements_kwargs(self) -> dict:
        return {"min_batch_size": 1, "max_batch_size": 1}   # one test per call: its images are the batch

    def share_model_across_processes(self) -> bool:
        return self.model_config.share_across_processes

    def get_metrics_namespace(self) -> str:
        return "igaudit_interventions"


class Intervene(beam.PTransform):
    """PCollection[images row dict] -> PCollection[(test_id, figures dict)] (`evidence.FIGURES`, `attending`,
    `class_count`).

    tests: a PCollection holding one list of InterventionTest (the side input); sample: images per
    test and role; spec: the decode stage's `DecodeSpec` (the images are decoded again as they were); input_config:
    the config's `input` section (how to read an input again by its uri: a file or a TFRecord record).
    """

    def __init__(self, handler: InterventionHandler, tests, sample: int, spec: DecodeSpec, input_config):
        super().__init__()
        self.handler, self.tests, self.sample = handler, tests, sample
        self.spec, self.input_config = spec, input_config

    def expand(self, rows):
        tests = beam.pvalue.AsSingleton(self.tests)
        offered = rows | "Roles" >> beam.FlatMap(roles, tests)
        counts = offered | "CountPerRole" >> beam.combiners.Count.PerKey()
        return (offered
                | "SamplePerTest" >> beam.combiners.Top.PerKey(self.sample, key=lambda item: item[0], reverse=True)
                | "ByTest" >> beam.MapTuple(lambda key, items: (key[0], (key[1], items)))
                | "GroupByTest" >> beam.GroupByKey()
                | "ReadSample" >> beam.ParDo(_ReadSampleFn(self.spec, self.input_config), tests, beam.pvalue.AsDict(counts))
                | "Rescore" >> RunInference(self.handler))
