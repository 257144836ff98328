"""A first pass over the decoded images for attributions that need the whole dataset.

`attribution.baseline: mean` uses the dataset's mean image; `expected_gradients`
draws baselines from a fixed reference sample of the dataset. Both are computed
here with combiners and handed to the IG stage as side inputs, attached to each
element, so every worker sees the same arrays whatever the batching.
"""
from __future__ import annotations

import dataclasses
import hashlib

import apache_beam as beam
import numpy as np

from igaudit.transforms.records import DecodedImage


class MeanImageFn(beam.CombineFn):
    """DecodedImage -> the mean of their pixels (float32 H x W x C); mergeable (sum, count)."""

    def create_accumulator(self):
        return None, 0

    def add_input(self, acc, image: DecodedImage):
        total, n = acc
        pixels = image.pixels.astype(np.float64)
        return (pixels if total is None else total + pixels), n + 1

    def merge_accumulators(self, accumulators):
        total, n = None, 0
        for t, c in accumulators:
            if t is not None:
                total = t.copy() if total is None else total + t
            n += c
        return total, n

    def extract_output(self, acc):
        total, n = acc
        return None if total is None else (total / n).astype(np.float32)


def reference_key(image: DecodedImage) -> str:
    """A hash of the id: the reference sample is the same whatever the order of arrival."""
    return hashlib.sha256(image.image_id.encode("utf-8")).hexdigest()


def _attach(image: DecodedImage, mean, references) -> DecodedImage:
    return dataclasses.replace(image, baseline=mean, references=references)


class AttachDatasetContext(beam.PTransform):
    """PCollection[DecodedImage] -> PCollection[DecodedImage] with `baseline` (the dataset mean image,
    when `mean`) and `references` (`references` images chosen by id hash, when > 0) filled in."""

    def __init__(self, mean: bool, references: int = 0):
        super().__init__()
        self.mean, self.references = mean, references

    def expand(self, images):
        mean = beam.pvalue.AsSingleton(images | "MeanImage" >> beam.CombineGlobally(MeanImageFn())) \
            if self.mean else None
        refs = None
        if self.references:
            sample = (images
                      | "ReferenceSample" >> beam.combiners.Top.Of(self.references, key=reference_key,
                                                                    reverse=True)
                      | "StackReferences" >> beam.Map(lambda xs: np.stack([x.pixels for x in xs])
                                                      if xs else None))
            refs = beam.pvalue.AsSingleton(sample)
        return images | "AttachContext" >> beam.Map(_attach, mean, refs)
