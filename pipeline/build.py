"""The only place that knows the whole graph: wires the stages together.

    files --MatchImages--> ImageFile --ReadImageBytes--> ImageBytes --DecodeImages--> DecodedImage
      (or TFRecord shards --ReadTFRecords--> ImageBytes)
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

import apache_beam as beam

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
from igaudit.transforms.skew import FlagSkew
from igaudit.transforms.tfrecords import ReadTFRecords
from igaudit.transforms.verdicts import FINDINGS, ROWS, CandidateTests, Verdicts
from igaudit.transforms.write import (WriteArtifacts, write_classes_table, write_clusters_table,
                                      write_findings_table, write_images_table, write_rejected_table, write_skew_table)


def model_handler(cfg: Config, plan: Plan) -> ExplainerHandler:
    return ExplainerHandler(cfg.model, cfg.attribution, cfg.quality, plan.class_names, plan.target,
                            baseline_image=plan.baseline_image)


def build_pipeline(p: beam.Pipeline, cfg: Config, plan: Plan, out_dir: str, base: dict) -> None:
    """Add the audit's stages to `p`, writing under `out_dir`; the last one (Finalize) writes report.html,
    run.json and _SUCCESS from what the others wrote. base: see `finalize.finish_run`. The reference run's
    class and skew rows (the flags each status is judged against) come in `plan`."""
    a = cfg.attribution
    if cfg.input.format == "tfrecord":
        records = p | "ReadTFRecords" >> ReadTFRecords(cfg.input.pattern, cfg.input.tfrecord, plan.class_names)
        read_images, read_rejected = records["images"], records["rejected"]
        matched = ((read_images, read_rejected) | "AllRecords" >> beam.Flatten()
                   | "CountInputs" >> beam.combiners.Count.Globally())
    else:
        files = p | "MatchImages" >> MatchImages(cfg.input.pattern, plan.manifest_files)
        matched = files | "CountInputs" >> beam.combiners.Count.Globally()
        read = files | "ReadImageBytes" >> ReadImageBytes()
        read_images, read_rejected = read.images, read.rejected
    decoded = read_images | "DecodeImages" >> DecodeImages(
        plan.input_shape[:2], cfg.model.resize, cfg.input.max_pixels, channels=plan.input_shape[2])
    images = decoded.decoded
    references = a.references if a.method == "expected_gradients" else 0
    if a.baseline == "mean" or references:
        images = images | "DatasetContext" >> AttachDatasetContext(a.baseline == "mean", references)
    attributed = images | "Attribute" >> Attribute(model_handler(cfg, plan))
    several_targets = plan.target.per_image > 1
    rows = attributed.attributed | "WriteArtifacts" >> WriteArtifacts(
        out_dir, plan.class_names, output=cfg.output, analysis=cfg.analysis, options=cfg.render,
        per_target_files=several_targets)
    an = cfg.analysis
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
    figures = rows | "Intervene" >> Intervene(
        InterventionHandler(cfg.model, an.border), tests, an.intervention_sample, plan.input_shape, cfg.model.resize,
        cfg.input.max_pixels, cfg.input)
    judged = (candidates, figures, tests, classes) | "Verdicts" >> Verdicts(plan.class_names, an.grid,
                                                                            plan.reference_findings, an.max_tests)
    skew_written = write_skew_table(judged[ROWS], out_dir)
    findings_written = write_findings_table(judged[FINDINGS], out_dir)
    rejected = ((read_rejected, decoded.rejected, attributed.rejected)
                | "FlattenRejected" >> beam.Flatten()
                | "RejectedRow" >> beam.Map(lambda r: r.to_row()))
    rejected_written = write_rejected_table(rejected, out_dir)
    p | "Finalize" >> Finalize(out_dir, base, matched,
                               [images_written, classes_written, clusters_written, skew_written, findings_written,
                                rejected_written])
