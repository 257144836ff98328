"""The configuration reference, generated from the schema: every field of `pipeline/config.py`, its default and
what it does, as the YAML block of docs/configuration.md.

The schema declares each option and its default once; HELP holds its one-line description, keyed by the
dotted name. `reference_yaml` walks the schema and writes one line a field (a nested section, its
fields indented beneath it), comments wrapped at WIDTH; `python -m igaudit.pipeline.config_reference`
rewrites the block in docs/configuration.md (`make docs`), and tests/test_docs.py fails when the file and
the schema disagree, or when a field has no description.
"""
from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import yaml

from igaudit.pipeline import config

COMMENT_AT = 34          # the column comments start at
WIDTH = 118              # the longest line
DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
# shown instead of the default where the default is no example (a run needs a pattern or a manifest)
EXAMPLES = {"input.pattern": "data/train/*/*.png"}

HELP = {
    'input': 'what to read: a glob of image files, a manifest, or TFRecord shards',
    'input.pattern': 'any Beam filesystem glob (local, gs://, s3://); label = parent folder name',
    'input.manifest': "alternative: CSV/TSV/JSONL/Parquet with columns uri,label[,image_id]; relative uris are relative to the manifest's folder",
    'input.max_pixels': 'images declaring more pixels are rejected before decoding (bomb guard)',
    'input.format': 'files | tfrecord (pattern matches TFRecord shards; runners.md, "TFRecord input")',
    'input.tfrecord': 'tf.train.Example feature keys, for format: tfrecord',
    'input.tfrecord.image': 'the encoded image bytes',
    'input.tfrecord.label_text': 'the label as text, or else ...',
    'input.tfrecord.label_index': '... as an index into model.class_names',
    'input.tfrecord.id': "the record's id; else the shard's name and the record's position",
    'model': 'the classifier under audit',
    'model.path': '.keras file | SavedModel dir | TF-Hub handle or local TF-Hub dir',
    'model.input_size': '[H, W]; null: the size the model declares (needed only if it declares none)',
    'model.input_range': 'what the model expects pixels scaled to: [0,1], [-1,1] or [0,255]',
    'model.output': 'logits | probabilities',
    'model.class_names': 'text file, one name per output index; default: sorted dataset labels',
    'model.resize': 'pad (aspect kept, black bars) | crop (center) | stretch',
    'model.format': 'auto | keras | saved_model | hub',
    'model.signature': 'SavedModel signature to call',
    'model.share_across_processes': 'one model copy per machine instead of per process (RunInference)',
    'model.precision': 'Keras models: float32 | mixed_float16 (GPUs) | mixed_bfloat16 (CPUs with AVX-512 BF16 / AMX); float32 weights, gradients summed in float32 (performance.md, "Precision")',
    'attribution': 'a setting the method does not read, set to other than its default, is a config error naming the method (transforms/attribution/choices.py, METHOD_SETTINGS); rows record a rule only for integrated_gradients',
    'attribution.method': 'integrated_gradients | gradients (saliency) | gradient_x_input | expected_gradients | grad_cam | occlusion',
    'attribution.steps': 'auto: refine each image until its error estimate holds | a number of intervals',
    'attribution.rule': 'adaptive | trapezoid | graded_trapezoid | gauss_legendre | riemann_left | riemann_right | riemann_middle (steps: auto takes adaptive, trapezoid, gauss_legendre; smoothing needs a fixed rule: then 50 / trapezoid by default)',
    'attribution.pixel_tolerance': 'steps: auto (adaptive): refine until the estimated per-pixel error <= this * sum |IG| ...',
    'attribution.max_steps': '... or max_steps; images.parquet records the steps each image used',
    'attribution.tolerance': "steps: auto with trapezoid / gauss_legendre: double the steps until |completeness gap| <= tolerance * |F(x) - F(x')| (adaptive reports the gap only)",
    'attribution.baseline': "black | white | uniform (random pixels) | gaussian (input + noise) | blur (input blurred, blur_sigma) | mean (the dataset's mean image, computed in a first pass) | a path to a baseline image",
    'attribution.baseline_samples': 'average IG over N random baselines (uniform/gaussian); expected_gradients: draws',
    'attribution.blur_sigma': 'pixels, for baseline: blur',
    'attribution.baseline_stdev': 'noise for baseline: gaussian, as a fraction of the [0, 1] range',
    'attribution.references': 'expected_gradients: images of the dataset its baselines are drawn from',
    'attribution.target': 'predicted | label | top_k | a class name | a class index',
    'attribution.k': 'targets per image for top_k (rows and files keyed by image and target)',
    'attribution.score': 'probability (softmax of the target) | logit',
    'attribution.smoothing': 'none | smoothgrad | smoothgrad_sq | vargrad (integrated_gradients, expected_gradients, gradients, gradient_x_input)',
    'attribution.samples': 'smoothing: noisy samples per image',
    'attribution.stdev': 'smoothing: noise stdev as a fraction of the input range',
    'attribution.layer': 'grad_cam: the conv layer (default: the last one with h x w x k output)',
    'attribution.window': 'occlusion: window side, pixels',
    'attribution.stride': 'occlusion: stride, pixels',
    'attribution.fill': 'occlusion: fill value in [0, 1] pixel units',
    'attribution.batch_size': 'images per RunInference batch',
    'attribution.chunk_size': 'interpolated samples per gradient call, or auto (timed once at model load)',
    'attribution.memory_mb': 'chunk_size auto: activation memory budget',
    'attribution.jit_compile': 'XLA; slower on CPU, try it on GPU',
    'output': 'where the run writes (outputs.md)',
    'output.dir': 'local path or gs://, s3://',
    'output.masks': 'write masks/<image_id>.png: the attribution map in grey',
    'output.overlays': 'write overlays/<image_id>.png: the map over the image',
    'output.raw': 'write raw/<image_id>.npy: float32 H x W x C IG w.r.t. pixels in [0, 1]',
    'output.layout': 'files: one file per mask, overlay, raw array; shards: artifacts/*.parquet, 256 images each',
    'analysis': 'per-class statistics, candidates, intervention tests and findings (verdicts.md)',
    'analysis.grid': 'attribution mass pooled to a G x G grid per image',
    'analysis.border': 'border band (fraction of each side) for border_mass',
    'analysis.reference': "an earlier run's output dir to compare against (audits pick it themselves)",
    'analysis.max_rejected_share': 'a run rejecting more of its inputs than this fails (status failed, exit 1)',
    'analysis.thresholds': 'override candidate thresholds, e.g. {grid_js: 0.15}; verdicts.md, "Skew analysis"',
    'analysis.alert_on': 'new: run / audit exit 3 only for new shortcut (or drift) findings | any',
    'analysis.fail_on_suspect': 'a complete but suspect run (near chance, one class predicted) exits 4',
    'analysis.notify': 'README, "Scheduling": who hears about a run, on which exit codes',
    'analysis.notify.command': 'a shell command; the alert JSON on its stdin',
    'analysis.notify.url': 'an http(s) URL that gets the alert as a JSON POST',
    'analysis.notify.on': 'failed, alert, suspect',
    'analysis.notify.timeout': 'seconds the command or the POST may take',
    'analysis.max_clusters': 'strategy clusters per class (1: no clustering)',
    'analysis.cluster_sample': 'images per class the clustering sees (a seeded sample; every image is assigned)',
    'analysis.intervention_sample': 'images per candidate test re-scored (those that look at its region), and of others',
    'analysis.max_tests': "intervention tests per run: re-tests of the reference run's shortcuts first, then by score; candidates beyond it say so (evidence: untested)",
    'audit': 'what `igaudit audit` keeps',
    'audit.keep': 'audit: keep the newest N complete runs under output.dir, delete older ones',
    'audit.reuse': 'with a reference run (audit picks one): take each image whose bytes and label, the model and every '
                   'setting that shapes its row are unchanged from the reference run instead of attributing it '
                   'again (pipeline/reuse.py)',
    'render': "how masks and overlays look; defaults: the TensorFlow IG tutorial's look",
    'render.polarity': 'absolute | positive | negative | both (signed, diverging colour map)',
    'render.clip_upper': 'percentile mapped to full intensity',
    'render.clip_lower': 'percentile mapped to zero (0: no floor)',
    'render.cmap': 'auto (inferno; pink_green for both) | inferno | viridis | pink_green | red_green',
    'render.overlay': "heat | heat_gray | masked (top pixels kept) | outlines (top regions' borders)",
    'render.image_weight': 'image share of the heat blends',
    'render.masked_keep': 'masked: fraction of pixels kept',
    'render.outline_top': 'outlines: fraction of pixels thresholded',
    'render.outline_regions': 'outlines: largest regions drawn',
    'render.outline_color': "outlines: the borders' colour, RGB 0-255",
    'render.outline_width': "outlines: the borders' width, pixels",
    'quality': 'faithfulness metrics per image, off by default (they cost forward passes)',
    'quality.enabled': 'compute deletion / insertion AUC and infidelity per image',
    'quality.steps': 'deletion / insertion curve steps (AUC over the fraction removed/inserted)',
    'quality.ranking': 'order pixels by signed (positive) or absolute attribution',
    'quality.infidelity_samples': "Captum's infidelity: seeded Gaussian perturbations per image",
    'quality.infidelity_stdev': "the perturbations' stdev, as a fraction of the [0, 1] range",
    'beam': 'extra Beam pipeline options, e.g. {direct_num_workers: 2}; command-line flags win',
}


def _section_of(f: dataclasses.Field):
    """The dataclass of a field that is a section of its own (Config's sections, input.tfrecord,
    analysis.notify), else None."""
    factory = f.default_factory
    return factory if factory is not dataclasses.MISSING and dataclasses.is_dataclass(factory) else None


def fields(cls=config.Config, prefix: str = "") -> Iterator[tuple[str, Any, bool]]:
    """(dotted key, default, is a section) for every field of the schema, nested sections walked, in the
    schema's order."""
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        section = _section_of(f)
        if section is not None:
            yield key, None, True
            yield from fields(section, key + ".")
        else:
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            yield key, default, False


def yaml_value(value: Any) -> str:
    """A default as it is written in YAML, in flow style (a tuple as a list)."""
    if isinstance(value, tuple):
        value = list(value)
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _lines(key: str, value: str, is_section: bool) -> list[str]:
    depth = key.count(".")
    text = "  " * depth + key.rsplit(".", 1)[-1] + ":" + ("" if is_section else f" {value}")
    words = HELP[key]
    if not words:
        return [text]
    wrapped = textwrap.wrap(words, WIDTH - COMMENT_AT - 4, break_on_hyphens=False)
    first = text.ljust(COMMENT_AT) if len(text) < COMMENT_AT else text + "  "
    lines = [f"{first}# {wrapped[0]}"]
    return lines + [" " * COMMENT_AT + f"#   {w}" for w in wrapped[1:]]


def reference_yaml() -> str:
    """The YAML block: every field of the schema with its default (EXAMPLES aside) and HELP."""
    out = []
    for key, default, is_section in fields():
        out += _lines(key, yaml_value(EXAMPLES.get(key, default)), is_section)
    return "\n".join(out) + "\n"


def with_reference(document: str) -> str:
    """The document with its ```yaml block that starts with `input:` replaced by `reference_yaml`."""
    head, fence, rest = document.partition("```yaml\ninput:")
    if not fence:
        raise ValueError("no ```yaml block starting with input: to replace")
    _, end, tail = rest.partition("```")
    return head + "```yaml\n" + reference_yaml() + end + tail


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else DOCUMENT
    path.write_text(with_reference(path.read_text()))
    print(f"wrote the configuration reference to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
