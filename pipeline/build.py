"""The only place that knows the whole graph: wires the stages together.

    files --MatchImages--> ImageFile (or TFRecord shards --ReadTFRecords--> ImageBytes) --AuditImages-->:
      ImageFile --ReadImageBytes--> ImageBytes [--ReuseUnchanged (audit.reuse: unchanged images' rows and
        files from the reference run, flattened into images rows below)-->] --DecodeImages--> DecodedImage
      [--AttachDatasetContext (mean image / reference sample, side inputs)-->]
      --Attribute (RunInference + Explainer)--> AttributionResult --WriteArtifacts--> images rows
      images rows --ClusterStrategies (bounded sample per class -> centres, side input -> every row)-->
        images rows with clusters (images/*.parquet), cluster summaries --> clusters rows
      images rows --AggregateClasses--> classes rows
      (classes, clusters rows) --FlagSkew (class metrics, clusters' excess, drift and re-tests against the
        reference run)--> candidates
      candidates --CandidateTests--> tests (side input) --Intervene (bounded sample per test of the images
        that look there, re-read, forward-only re-scoring)--> figures
      (candidates, figures, tests, classes) --Verdicts (outcome, evidence; one finding per shortcut, its
        status vs the reference run's findings)--> skew rows, findings
      rejected from read / decode / attribute --> rejected rows
      every sink's written files (side inputs) --Finalize--> report.html, run.json, _SUCCESS last
"""
from __future__ import annotations

from typing import Optional

import apache_beam as beam

from igaudit.pipeline import finalize, ownership, preflight
from igaudit.pipeline.config import Config
from igaudit.pipeline.finalize import Finalize
from igaudit.pipeline.preflight import Plan
from igaudit.transforms.aggregate import AggregateClasses
from igaudit.transforms.analysis.skew import cluster_table
from igaudit.transforms.attribute import Attribute, ExplainerHandler
from igaudit.transforms.cluster import ClusterStrategies
from igaudit.transforms.dataset_context import AttachDatasetContext
from igaudit.transforms.decode import DecodeImages
from igaudit.transforms.intervene import Intervene, InterventionHandler
from igaudit.transforms.read import MatchImages, ReadImageBytes
from igaudit.transforms.reuse import FRESH, REUSED, ReuseUnchanged
from igaudit.transforms.skew import FlagSkew
from igaudit.transforms.tfrecords import ReadTFRecords
from igaudit.transforms.verdicts import FINDINGS, ROWS, CandidateTests, Verdicts
from igaudit.transforms.write import (WriteArtifacts, write_classes_table, write_clusters_table,
                                      write_findings_table, write_images_table, write_rejected_table, write_skew_table)


def model_handler(cfg: Config, plan: Plan) -> ExplainerHandler:
    return ExplainerHandler(cfg.model, cfg.attribution, cfg.quality, plan.class_names, plan.target,
                            baseline_image=plan.baseline_image)


def build_pipeline(p: beam.Pipeline, cfg: Config, plan: Plan, out_dir: str, base: dict) -> None:
    """Add the audit's stages to `p`, writing under `out_dir`: the inputs as the config says (files matched by
    `input.pattern` or listed in a manifest, or TFRecord shards), then `AuditImages`. base: see
    `finalize.finish_run`."""
    if cfg.input.format == "tfrecord":
        images = p | "ReadTFRecords" >> ReadTFRecords(cfg.input.pattern, cfg.input.tfrecord, plan.class_names)
    else:
        images = p | "MatchImages" >> MatchImages(cfg.input.pattern, plan.manifest_files)
    images | "AuditImages" >> AuditImages(cfg, plan, out_dir, base, claim=False)   # run_job claimed it


class AuditImages(beam.PTransform):
    """The whole audit as one transform, for a Beam pipeline of your own:

        files = p | beam.Create([image_file_for(uri, label), ...])    # ImageFile: any PCollection of them
        run = files | AuditImages(cfg)       # -> PCollection[dict]: run.json's content, once all is written

    Input: a PCollection of `ImageFile` (an image's uri, label and path-safe id: `read.image_file_for`), or
    the tagged output of `ReadTFRecords`. Writes every output of a run under `out_dir` (default `cfg.output.dir`): masks, overlays,
    the Parquet tables, report.html, run.json and, last, _SUCCESS. cfg: a `Config` (`config.load_config`,
    `config.from_dict`); plan: what the checks found (`preflight.check`; default: `preflight.plan_for(cfg)`,
    which loads the model once here to read its input shape, and takes the classes from `model.class_names`
    or the labels of `cfg.input`). base: run.json's fixed part (default `finalize.base_info`). The
    output folder is claimed when the graph is built (`ownership.claim`: a folder holding files igaudit did
    not write is refused) unless `claim` is False (the CLI claims it first)."""

    def __init__(self, cfg: Config, plan: Optional[Plan] = None, out_dir: Optional[str] = None,
                 base: Optional[dict] = None, claim: bool = True):
        super().__init__()
        self.cfg = cfg
        self.plan = plan or preflight.plan_for(cfg)
        self.out_dir = out_dir or cfg.output.dir
        self.base = base or finalize.base_info(cfg, self.plan)
        self.claim = claim

    def expand(self, inputs):
        cfg, plan, out_dir = self.cfg, self.plan, self.out_dir
        if self.claim:
            ownership.claim(out_dir)
        a, an = cfg.attribution, cfg.analysis
        if isinstance(inputs, beam.pvalue.PCollection):          # image references: read their bytes
            matched = inputs | "CountInputs" >> beam.combiners.Count.Globally()
            read = inputs | "ReadImageBytes" >> ReadImageBytes()
            read_images, read_rejected = read.images, read.rejected
        else:                                                   # ReadTFRecords: bytes already, counted as read
            read_images, read_rejected = inputs["images"], inputs["rejected"]
            matched = ((read_images, read_rejected) | "AllRecords" >> beam.Flatten()
                       | "CountInputs" >> beam.combiners.Count.Globally())
        p = read_images.pipeline
        several_targets = plan.target.per_image > 1
        reused = None
        if plan.reuse_from:      # an incremental audit: unchanged images' rows and files from the reference run
            split = read_images | "ReuseUnchanged" >> ReuseUnchanged(plan.reuse_from, out_dir, cfg.output,
                                                                     several_targets)
            read_images, reused = split[FRESH], split[REUSED]
        decoded = read_images | "DecodeImages" >> DecodeImages(plan.decode)
        images = decoded.decoded
        references = a.references if a.method == "expected_gradients" else 0
        if a.baseline == "mean" or references:
            images = images | "DatasetContext" >> AttachDatasetContext(a.baseline == "mean", references)
        attributed = images | "Attribute" >> Attribute(model_handler(cfg, plan))
        rows = attributed.attributed | "WriteArtifacts" >> WriteArtifacts(
            out_dir, plan.class_names, output=cfg.output, analysis=an, options=cfg.render,
            per_target_files=several_targets)
        if reused is not None:
            rows = (rows, reused) | "WithReused" >> beam.Flatten()
        rows, summaries = rows | "ClusterStrategies" >> ClusterStrategies(an.max_clusters, an.cluster_sample,
                                                                          primary_only=several_targets)
        images_written = write_images_table(rows, out_dir)
        if several_targets:  # classes summarise each image once: its attribution for the predicted class
            rows = rows | "PredictedTargetOnly" >> beam.Filter(lambda r: r["target"] == r["predicted"])
        classes = rows | "AggregateClasses" >> AggregateClasses()
        classes_written = write_classes_table(classes, out_dir)
        clusters = (summaries
                    | "AllClusterSummaries" >> beam.combiners.ToList()
                    | "ClusterRows" >> beam.FlatMap(cluster_table, beam.pvalue.AsList(classes)))
        clusters_written = write_clusters_table(clusters, out_dir)
        candidates = (classes, clusters) | "FlagSkew" >> FlagSkew(plan.reference_classes, plan.reference_findings,
                                                                  an.thresholds, an.grid, an.border)
        tests = candidates | "CandidateTests" >> CandidateTests(plan.class_names, an.grid, an.max_tests)
        figures = rows | "Intervene" >> Intervene(InterventionHandler(cfg.model, an.border), tests,
                                                  an.intervention_sample, plan.decode, cfg.input)
        judged = (candidates, figures, tests, classes) | "Verdicts" >> Verdicts(plan.class_names, an.grid,
                                                                                plan.reference_findings, an.max_tests)
        skew_written = write_skew_table(judged[ROWS], out_dir)
        findings_written = write_findings_table(judged[FINDINGS], out_dir)
        rejected = ((read_rejected, decoded.rejected, attributed.rejected)
                    | "FlattenRejected" >> beam.Flatten()
                    | "RejectedRow" >> beam.Map(lambda r: r.to_row()))
        rejected_written = write_rejected_table(rejected, out_dir)
        return p | "Finalize" >> Finalize(out_dir, self.base, matched,
                                          [images_written, classes_written, clusters_written, skew_written,
                                           findings_written, rejected_written])
