"""The only place that knows the whole graph: wires the stages together.

    files --MatchImages--> ImageFile --ReadImageBytes--> ImageBytes --DecodeImages--> DecodedImage
      --Attribute (RunInference + IG)--> AttributionResult --WriteArtifacts--> images rows
      images rows --AggregateClasses--> classes rows --FlagSkew (vs dataset, vs reference run)--> skew rows
      rejected from read / decode / attribute --> rejected rows
"""
from __future__ import annotations

from typing import Optional, Sequence

import apache_beam as beam

from pipeline.config import Config
from transforms.aggregate import AggregateClasses
from transforms.attribute import Attribute, IGModelHandler
from transforms.decode import DecodeImages
from transforms.models import ModelSpec
from transforms.read import MatchImages, ReadImageBytes
from transforms.records import ImageFile
from transforms.skew import FlagSkew
from transforms.write import (WriteArtifacts, write_classes_table, write_images_table, write_rejected_table,
                              write_skew_table)


def model_spec(cfg: Config) -> ModelSpec:
    m = cfg.model
    return ModelSpec(path=m.path, input_size=tuple(m.input_size), input_range=tuple(m.input_range),
                     output=m.output, format=m.format, signature=m.signature)


def model_handler(cfg: Config, class_names: Sequence[str]) -> IGModelHandler:
    a = cfg.attribution
    return IGModelHandler(model_spec(cfg), class_names, rule=a.rule, steps=a.steps, score=a.score,
                          baseline=a.baseline, target=a.target, batch_size=a.batch_size,
                          chunk_size=a.chunk_size, jit_compile=a.jit_compile,
                          share_across_processes=cfg.model.share_across_processes)


def build_pipeline(p: beam.Pipeline, cfg: Config, class_names: Sequence[str], out_dir: str,
                   manifest_files: Optional[list[ImageFile]] = None,
                   reference_classes: Optional[list[dict]] = None) -> None:
    """Add the audit's stages to `p`, writing under `out_dir` (reference: an earlier run's class rows)."""
    files = p | "MatchImages" >> MatchImages(cfg.input.pattern, manifest_files)
    read = files | "ReadImageBytes" >> ReadImageBytes()
    decoded = read.images | "DecodeImages" >> DecodeImages(
        tuple(cfg.model.input_size), cfg.model.resize, cfg.input.max_pixels)
    attributed = decoded.decoded | "Attribute" >> Attribute(model_handler(cfg, class_names))
    rows = attributed.attributed | "WriteArtifacts" >> WriteArtifacts(
        out_dir, class_names, masks=cfg.output.masks, overlays=cfg.output.overlays, raw=cfg.output.raw,
        grid=cfg.analysis.grid, border=cfg.analysis.border, options=cfg.render_options())
    write_images_table(rows, out_dir)
    classes = rows | "AggregateClasses" >> AggregateClasses()
    write_classes_table(classes, out_dir)
    skew = classes | "FlagSkew" >> FlagSkew(reference_classes, cfg.analysis.thresholds)
    write_skew_table(skew, out_dir)
    rejected = ((read.rejected, decoded.rejected, attributed.rejected)
                | "FlattenRejected" >> beam.Flatten()
                | "RejectedRow" >> beam.Map(lambda r: r.to_row()))
    write_rejected_table(rejected, out_dir)
