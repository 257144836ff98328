"""The only place that knows the whole graph: wires the stages together.

    files --MatchImages--> ImageFile --ReadImageBytes--> ImageBytes --DecodeImages--> DecodedImage
      [--AttachDatasetContext (mean image / reference sample, side inputs)-->]
      --Attribute (RunInference + IG)--> AttributionResult --WriteArtifacts--> images rows
      images rows --AggregateClasses--> classes rows --FlagSkew (vs dataset, vs reference run)--> skew rows
      rejected from read / decode / attribute --> rejected rows
"""
from __future__ import annotations

from typing import Optional, Sequence

import apache_beam as beam

import numpy as np

from pipeline.config import BASELINE_KINDS, Config
from transforms.aggregate import AggregateClasses
from transforms.attribute import Attribute, AttributionSettings, IGModelHandler
from transforms.dataset_context import AttachDatasetContext
from transforms.decode import DecodeImages
from transforms.models import ModelSpec
from transforms.read import MatchImages, ReadImageBytes
from transforms.records import ImageFile
from transforms.skew import FlagSkew
from transforms.targets import parse_target
from transforms.write import (WriteArtifacts, write_classes_table, write_images_table, write_rejected_table,
                              write_skew_table)


def model_spec(cfg: Config) -> ModelSpec:
    m = cfg.model
    return ModelSpec(path=m.path, input_size=tuple(m.input_size), input_range=tuple(m.input_range),
                     output=m.output, format=m.format, signature=m.signature, mixed_precision=m.mixed_precision)


def attribution_settings(cfg: Config, class_names: Sequence[str],
                         baseline_image: Optional[np.ndarray] = None) -> AttributionSettings:
    """The attribution and quality config, resolved (raises ValueError naming a bad target)."""
    a, q = cfg.attribution, cfg.quality
    target = parse_target(a.target, class_names, k=a.k, num_classes=len(class_names))
    return AttributionSettings(
        method=a.method, rule=a.rule, steps=a.steps, tolerance=a.tolerance,
        pixel_tolerance=a.pixel_tolerance, max_steps=a.max_steps,
        score=a.score, baseline=a.baseline if a.baseline in BASELINE_KINDS else "image",
        baseline_image=baseline_image, baseline_samples=a.baseline_samples, blur_sigma=a.blur_sigma,
        baseline_stdev=a.baseline_stdev, target=target, smoothing=a.smoothing, samples=a.samples,
        stdev=a.stdev, layer=a.layer, window=a.window, stride=a.stride, fill=a.fill,
        chunk_size=a.chunk_size, memory_mb=a.memory_mb, jit_compile=a.jit_compile, quality=q.enabled,
        quality_steps=q.steps, quality_ranking=q.ranking, infidelity_samples=q.infidelity_samples,
        infidelity_stdev=q.infidelity_stdev)


def model_handler(cfg: Config, class_names: Sequence[str], settings: AttributionSettings) -> IGModelHandler:
    return IGModelHandler(model_spec(cfg), class_names, settings, batch_size=cfg.attribution.batch_size,
                          share_across_processes=cfg.model.share_across_processes)


def build_pipeline(p: beam.Pipeline, cfg: Config, class_names: Sequence[str], out_dir: str,
                   manifest_files: Optional[list[ImageFile]] = None,
                   reference_classes: Optional[list[dict]] = None,
                   settings: Optional[AttributionSettings] = None) -> None:
    """Add the audit's stages to `p`, writing under `out_dir` (reference: an earlier run's class rows)."""
    settings = settings or attribution_settings(cfg, class_names)
    files = p | "MatchImages" >> MatchImages(cfg.input.pattern, manifest_files)
    read = files | "ReadImageBytes" >> ReadImageBytes()
    decoded = read.images | "DecodeImages" >> DecodeImages(
        tuple(cfg.model.input_size), cfg.model.resize, cfg.input.max_pixels)
    images = decoded.decoded
    references = cfg.attribution.references if settings.method == "expected_gradients" else 0
    if settings.baseline == "mean" or references:
        images = images | "DatasetContext" >> AttachDatasetContext(settings.baseline == "mean", references)
    attributed = images | "Attribute" >> Attribute(model_handler(cfg, class_names, settings))
    several_targets = settings.target.per_image > 1
    rows = attributed.attributed | "WriteArtifacts" >> WriteArtifacts(
        out_dir, class_names, masks=cfg.output.masks, overlays=cfg.output.overlays, raw=cfg.output.raw,
        grid=cfg.analysis.grid, border=cfg.analysis.border, options=cfg.render_options(),
        per_target_files=several_targets)
    write_images_table(rows, out_dir)
    if several_targets:  # classes summarise each image once: its attribution for the predicted class
        rows = rows | "PredictedTargetOnly" >> beam.Filter(lambda r: r["target"] == r["predicted"])
    classes = rows | "AggregateClasses" >> AggregateClasses()
    write_classes_table(classes, out_dir)
    skew = classes | "FlagSkew" >> FlagSkew(reference_classes, cfg.analysis.thresholds)
    write_skew_table(skew, out_dir)
    rejected = ((read.rejected, decoded.rejected, attributed.rejected)
                | "FlattenRejected" >> beam.Flatten()
                | "RejectedRow" >> beam.Map(lambda r: r.to_row()))
    write_rejected_table(rejected, out_dir)
