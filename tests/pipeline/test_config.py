"""pipeline/config.py: defaults, safe YAML loading, --set overrides, errors that name the field, the render options."""
import dataclasses
from pathlib import Path

import pytest

from igaudit.pipeline.config import (AnalysisConfig, AttributionConfig, Config, ConfigError, InputConfig,
                                     ModelConfig, OutputConfig, RenderConfig, apply_override, from_dict, load_config)
from igaudit.transforms.imaging.colormaps import resolve_cmap

REPO = Path(__file__).resolve().parents[2]
LOCAL_YAML = REPO / "configs" / "local.yaml"
PATTERN = "input.pattern=data/*/*.png"


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults -----------------------------------------------------------------------------------------
def test_dataclass_defaults():
    cfg = Config()
    assert cfg.model == ModelConfig()
    assert cfg.model.input_size is None          # the model's own size (transforms/attribution/models.py)
    assert cfg.model.input_range == (0.0, 1.0)
    assert cfg.model.output == "logits"
    assert cfg.attribution.steps == "auto"
    assert cfg.attribution.rule == "adaptive"
    assert cfg.attribution.pixel_tolerance == pytest.approx(0.03)
    assert cfg.attribution.score == "probability"
    assert cfg.analysis.grid == 16
    assert cfg.analysis.border == pytest.approx(0.1)
    assert cfg.output.masks is True and cfg.output.raw is False
    assert cfg.beam == {}


def test_only_an_input_needed_everything_else_defaults():
    cfg = load_config(None, [PATTERN])
    assert cfg.input.pattern == "data/*/*.png"
    assert cfg.input.manifest is None
    assert cfg.model == ModelConfig()
    assert cfg.attribution == AttributionConfig()
    assert cfg.output == OutputConfig()
    assert cfg.analysis == AnalysisConfig()


def test_embedded_local_yaml_loads_and_matches_the_schema_defaults():
    cfg = load_config(LOCAL_YAML)
    assert cfg.input.pattern == "data/demo/audit/*/*.png"
    assert cfg.input.manifest is None
    # the shipped file documents the defaults: it must not drift from the dataclasses
    assert cfg.model == ModelConfig()
    assert cfg.attribution == AttributionConfig()
    assert cfg.output == OutputConfig()
    assert cfg.analysis == AnalysisConfig()
    # validated values come back normalised: pairs as tuples, floats as floats
    assert cfg.model.input_range == (0.0, 1.0) and all(isinstance(x, float) for x in cfg.model.input_range)


def test_to_dict_round_trips_through_from_dict():
    cfg = load_config(LOCAL_YAML, ["attribution.steps=7", "beam.direct_num_workers=2"])
    assert from_dict(cfg.to_dict()) == cfg


# -- YAML files ---------------------------------------------------------------------------------------
def test_yaml_file_values_are_used(tmp_path):
    path = write(tmp_path, """
input:
  manifest: data/manifest.csv
model:
  path: m.keras
  input_size: [32, 48]
  input_range: [-1, 1]
  output: probabilities
attribution:
  steps: 128
  rule: gauss_legendre
  jit_compile: true
output:
  dir: out/x
  raw: true
analysis:
  grid: 8
  border: 0.25
beam:
  direct_num_workers: 4
""")
    cfg = load_config(path)
    assert cfg.input.manifest == "data/manifest.csv" and cfg.input.pattern is None
    assert cfg.model.path == "m.keras"
    assert cfg.model.input_size == (32, 48)
    assert cfg.model.input_range == (-1.0, 1.0)
    assert cfg.model.output == "probabilities"
    assert cfg.attribution.steps == 128
    assert cfg.attribution.rule == "gauss_legendre"
    assert cfg.attribution.jit_compile is True
    assert cfg.attribution.batch_size == AttributionConfig().batch_size  # untouched keys keep defaults
    assert cfg.output.dir == "out/x" and cfg.output.raw is True
    assert cfg.analysis.grid == 8 and cfg.analysis.border == 0.25
    assert cfg.beam == {"direct_num_workers": 4}


def test_empty_sections_mean_defaults(tmp_path):
    path = write(tmp_path, "input:\n  pattern: a/*/*.png\nmodel:\nattribution: {}\n")
    cfg = load_config(path)
    assert cfg.model == ModelConfig() and cfg.attribution == AttributionConfig()


def test_python_object_tag_is_refused_not_executed(tmp_path):
    sentinel = tmp_path / "pwned"
    path = write(tmp_path, f"""
input:
  pattern: a/*/*.png
model:
  path: !!python/object/apply:os.system ["touch {sentinel}"]
""")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert not sentinel.exists()


def test_python_object_new_tag_is_refused(tmp_path):
    path = write(tmp_path, "input: !!python/object:igaudit.pipeline.config.InputConfig {pattern: x}\n")
    with pytest.raises(ConfigError):
        load_config(path)


def test_override_with_python_tag_is_not_executed(tmp_path):
    sentinel = tmp_path / "pwned"
    try:
        cfg = load_config(None, [PATTERN, f'model.path=!!python/object/apply:os.system ["touch {sentinel}"]'])
    except ConfigError:
        cfg = None
    assert not sentinel.exists()
    if cfg is not None:  # taken literally as text at most
        assert isinstance(cfg.model.path, str)


def test_missing_config_file_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "config.yaml"
    with pytest.raises(ConfigError) as err:
        load_config(missing)
    assert str(missing) in str(err.value)


def test_invalid_yaml_names_the_path(tmp_path):
    path = write(tmp_path, "input: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path, text):
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, text))


def test_section_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "input:\n  pattern: a/*\nmodel: 5\n"))
    assert "'model'" in str(err.value)


def test_beam_section_must_be_a_mapping():
    with pytest.raises(ConfigError) as err:
        from_dict({"input": {"pattern": "a/*"}, "beam": [1, 2]})
    assert "beam" in str(err.value)


# -- --set overrides ----------------------------------------------------------------------------------
def test_overrides_parse_yaml_values():
    cfg = load_config(None, [
        PATTERN,
        "attribution.steps=100",
        "attribution.jit_compile=true",
        "output.masks=false",
        "model.input_size=[32,32]",
        "model.input_range=[-1, 1]",
        "analysis.border=0.2",
        "analysis.grid=4",
        "beam.direct_num_workers=3",
    ])
    assert cfg.attribution.steps == 100 and isinstance(cfg.attribution.steps, int)
    assert cfg.attribution.jit_compile is True
    assert cfg.output.masks is False
    assert cfg.model.input_size == (32, 32)
    assert cfg.model.input_range == (-1.0, 1.0)
    assert cfg.analysis.border == pytest.approx(0.2)
    assert cfg.analysis.grid == 4
    assert cfg.beam == {"direct_num_workers": 3}


def test_overrides_win_over_the_file_and_apply_in_order(tmp_path):
    path = write(tmp_path, "input:\n  pattern: a/*/*.png\nattribution:\n  steps: 10\n  rule: riemann_left\n")
    cfg = load_config(path, ["attribution.steps=20", "attribution.steps=30"])
    assert cfg.attribution.steps == 30
    assert cfg.attribution.rule == "riemann_left"  # keys not overridden stay from the file


def test_override_value_may_contain_equals_sign():
    cfg = load_config(None, ["input.pattern=data/a=b/*.png"])
    assert cfg.input.pattern == "data/a=b/*.png"


def test_override_can_switch_pattern_to_manifest(tmp_path):
    path = write(tmp_path, "input:\n  pattern: a/*/*.png\n")
    cfg = load_config(path, ["input.pattern=", "input.manifest=m.csv"])
    assert cfg.input.pattern is None and cfg.input.manifest == "m.csv"


def test_override_into_a_null_section(tmp_path):
    path = write(tmp_path, "input:\n  pattern: a/*/*.png\nattribution:\n")
    assert load_config(path, ["attribution.steps=3"]).attribution.steps == 3


def test_apply_override_mutates_raw_in_place():
    raw = {}
    apply_override(raw, "model.input_size=[8, 16]")
    apply_override(raw, "model.path=x.keras")
    assert raw == {"model": {"input_size": [8, 16], "path": "x.keras"}}


@pytest.mark.parametrize("assignment", ["attribution.steps", "steps=3", "a.b.c=1", ".steps=1", "attribution.=1"])
def test_malformed_override(assignment):
    with pytest.raises(ConfigError) as err:
        load_config(None, [PATTERN, assignment])
    assert assignment in str(err.value)


# -- validation errors name the dotted field ----------------------------------------------------------
def test_unknown_section():
    with pytest.raises(ConfigError) as err:
        load_config(None, [PATTERN, "atribution.steps=3"])
    assert "atribution" in str(err.value)
    assert "attribution" in str(err.value)  # lists the known sections


def test_unknown_key():
    with pytest.raises(ConfigError) as err:
        load_config(None, [PATTERN, "attribution.stepz=3"])
    assert "attribution.stepz" in str(err.value)
    assert "steps" in str(err.value)  # lists the known keys


@pytest.mark.parametrize("assignment, field", [
    ("attribution.steps=abc", "attribution.steps"),
    ("attribution.steps=0", "attribution.steps"),
    ("attribution.steps=-5", "attribution.steps"),
    ("attribution.steps=2.5", "attribution.steps"),
    ("attribution.steps=true", "attribution.steps"),
    ("attribution.batch_size=0", "attribution.batch_size"),
    ("attribution.chunk_size=[1]", "attribution.chunk_size"),
    ("attribution.rule=simpson", "attribution.rule"),
    ("attribution.score=margin", "attribution.score"),
    # a baseline path and a class-name target are checked when the run starts (test_attribution_options)
    ("attribution.baseline=5", "attribution.baseline"),
    ("attribution.target=-1", "attribution.target"),
    ("attribution.target=[a]", "attribution.target"),
    ("attribution.steps=sometimes", "attribution.steps"),
    ("attribution.method=lime", "attribution.method"),
    ("attribution.smoothing=blur", "attribution.smoothing"),
    ("quality.enabled=perhaps", "quality.enabled"),
    ("attribution.jit_compile=maybe", "attribution.jit_compile"),
    ("attribution.jit_compile=1", "attribution.jit_compile"),
    ("model.output=scores", "model.output"),
    ("model.resize=zoom", "model.resize"),
    ("model.format=onnx", "model.format"),
    ("model.path=", "model.path"),
    ("model.path=5", "model.path"),
    ("model.input_size=64", "model.input_size"),
    ("model.input_size=[64]", "model.input_size"),
    ("model.input_size=[64, 64, 3]", "model.input_size"),
    ("model.input_size=[0, 64]", "model.input_size"),
    ("model.input_size=[64, -1]", "model.input_size"),
    ("model.input_size=[32.5, 32]", "model.input_size"),
    ("model.input_size=[a, b]", "model.input_size"),
    ("model.input_size=[true, 32]", "model.input_size"),
    ("model.input_size=[.inf, 32]", "model.input_size"),
    ("model.input_size=[.nan, 32]", "model.input_size"),
    ("model.input_range=[1, 0]", "model.input_range"),
    ("model.input_range=[1, 1]", "model.input_range"),
    ("model.input_range=[0, .inf]", "model.input_range"),
    ("model.input_range=[.nan, 1]", "model.input_range"),
    ("model.input_range=0", "model.input_range"),
    ("model.share_across_processes=yes please", "model.share_across_processes"),
    ("analysis.grid=1", "analysis.grid"),
    ("analysis.border=0.6", "analysis.border"),
    ("analysis.border=-0.1", "analysis.border"),
    ("analysis.border=.nan", "analysis.border"),
    ("analysis.border=wide", "analysis.border"),
    ("output.dir=", "output.dir"),
    ("output.raw=sometimes", "output.raw"),
    ("input.max_pixels=0", "input.max_pixels"),
    ("input.manifest=[a.csv]", "input.manifest"),
])
def test_bad_value_names_the_field(assignment, field):
    with pytest.raises(ConfigError) as err:
        load_config(None, [PATTERN, assignment])
    message = str(err.value)
    assert f"'{field}'" in message
    assert "expected" in message  # says what would be accepted


def test_bad_value_in_yaml_file_names_the_field(tmp_path):
    path = write(tmp_path, "input:\n  pattern: a/*\nattribution:\n  steps: many\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "'attribution.steps'" in str(err.value)


def test_boundaries_are_accepted():
    cfg = load_config(None, [PATTERN, "attribution.steps=1", "analysis.grid=2", "analysis.border=0",
                             "model.input_size=[1, 1]", "model.input_range=[0, 255]"])
    assert cfg.attribution.steps == 1 and cfg.analysis.grid == 2 and cfg.analysis.border == 0.0
    assert cfg.model.input_size == (1, 1) and cfg.model.input_range == (0.0, 255.0)
    assert load_config(None, [PATTERN, "analysis.border=0.5"]).analysis.border == 0.5


def test_every_rule_score_and_output_is_accepted():
    from igaudit.transforms.attribution.choices import OUTPUTS, SCORES
    from igaudit.transforms.attribution.quadrature import RULES
    for rule in RULES:
        cfg = load_config(None, [PATTERN, f"attribution.rule={rule}", "attribution.steps=8"])
        assert cfg.attribution.rule == rule
    for score in SCORES:
        assert load_config(None, [PATTERN, f"attribution.score={score}"]).attribution.score == score
    for output in OUTPUTS:
        assert load_config(None, [PATTERN, f"model.output={output}"]).model.output == output


# -- exactly one input ---------------------------------------------------------------------------------
def test_no_input_is_an_error():
    with pytest.raises(ConfigError) as err:
        load_config(None, [])
    assert "input.pattern" in str(err.value) and "input.manifest" in str(err.value)


def test_both_inputs_is_an_error():
    with pytest.raises(ConfigError) as err:
        load_config(None, [PATTERN, "input.manifest=m.csv"])
    assert "input.pattern" in str(err.value) and "input.manifest" in str(err.value)


def test_manifest_only_is_fine():
    cfg = load_config(None, ["input.manifest=m.jsonl"])
    assert cfg.input == InputConfig(pattern=None, manifest="m.jsonl")


def test_config_is_frozen():
    cfg = load_config(None, [PATTERN])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.attribution.steps = 3  # type: ignore[misc]


# -- the step policy ----------------------------------------------------------------------------------
def test_default_step_policy_is_auto_adaptive_and_fixed_with_smoothing():
    cfg = load_config(None, [PATTERN])
    assert (cfg.attribution.steps, cfg.attribution.rule) == ("auto", "adaptive")
    smoothed = load_config(None, [PATTERN, "attribution.smoothing=smoothgrad"])
    assert (smoothed.attribution.steps, smoothed.attribution.rule) == (50, "trapezoid")
    chosen = load_config(None, [PATTERN, "attribution.smoothing=vargrad", "attribution.steps=12",
                                "attribution.rule=graded_trapezoid"])
    assert (chosen.attribution.steps, chosen.attribution.rule) == (12, "graded_trapezoid")
    budget = load_config(None, [PATTERN, "attribution.steps=24"])   # adaptive grid, fixed budget
    assert (budget.attribution.steps, budget.attribution.rule) == (24, "adaptive")


@pytest.mark.parametrize("overrides,named", [
    (["attribution.smoothing=smoothgrad", "attribution.steps=auto"], "attribution.smoothing"),
    (["attribution.smoothing=smoothgrad", "attribution.rule=adaptive"], "attribution.smoothing"),
    (["attribution.rule=riemann_middle"], "attribution.steps: auto"),
    (["attribution.pixel_tolerance=0"], "attribution.pixel_tolerance"),
])
def test_step_policy_conflicts_are_one_clear_error(overrides, named):
    with pytest.raises(ConfigError) as e:
        load_config(None, [PATTERN] + overrides)
    assert named in str(e.value) and "\n" not in str(e.value)


# -- the render section (RenderConfig) -----------------------------------------------------------------
@pytest.mark.parametrize("kw,field", [
    (dict(polarity="signed"), "polarity"),
    (dict(cmap="jet"), "cmap"),
    (dict(polarity="both", cmap="inferno"), "diverging"),
    (dict(overlay="blend"), "overlay"),
    (dict(clip_lower=99.0, clip_upper=99.0), "clip_lower"),
    (dict(clip_upper=101.0), "clip_upper"),
    (dict(masked_keep=1.5), "masked_keep"),
    (dict(image_weight=-0.1), "image_weight"),
    (dict(outline_regions=0), "outline_regions"),
    (dict(outline_color=(0, 300, 0)), "outline_color"),
])
def test_bad_options_name_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        RenderConfig(**kw)


def test_options_are_frozen_and_hashable():
    options = RenderConfig(outline_color=[1, 2, 3])
    assert options.outline_color == (1, 2, 3)
    assert hash(options) == hash(RenderConfig(outline_color=(1, 2, 3)))
    both = RenderConfig(polarity="both")
    assert resolve_cmap(both.cmap, both.polarity) == "pink_green"
    with pytest.raises(Exception):
        options.polarity = "both"


# -- errors name the place -------------------------------------------------------------------------------
@pytest.mark.parametrize("text, where", [
    ("input: [unclosed\nmodel: x\n", "line 2, column 6"),
    ("input:\n\tpattern: a\n", "line 2, column 1"),
    ("input:\n  pattern: 'a\n", "line 3"),
])
def test_yaml_errors_give_the_line_and_column(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert where in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("text, named", [
    ("input:\n  pattern: a/*.png\n  pattern: b/*.png\n", "duplicate key 'pattern' at line 3 (first at line 2)"),
    ("input:\n  pattern: a/*.png\nmodel: {}\nmodel:\n  path: m.keras\n", "duplicate key 'model' at line 4"),
])
def test_duplicate_keys_are_errors_naming_the_key(tmp_path, text, named):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert named in str(err.value)


def test_a_key_yaml_would_read_as_a_boolean_keeps_its_name(tmp_path):
    """YAML 1.1 reads a bare `on:` as True; keys are names, so `analysis.notify.on` works as written (values
    keep YAML's reading: `fail_on_suspect: no` is still false)."""
    path = write(tmp_path, "input:\n  pattern: a/*.png\nanalysis:\n  fail_on_suspect: no\n  notify:\n"
                           "    command: cat\n    on: [1, 3]\n")
    cfg = load_config(path)
    assert cfg.analysis.notify.on == (1, 3) and cfg.analysis.fail_on_suspect is False
    path = write(tmp_path, "input:\n  pattern: a/*.png\n  <<: {manifest: null}\n")     # merge keys still merge
    assert load_config(path).input.manifest is None


def test_bad_values_and_unknown_keys_name_their_line(tmp_path):
    path = write(tmp_path, "input:\n  pattern: a/*.png\nattribution:\n  method: integrated_gradients\n  steps: -3\n")
    with pytest.raises(ConfigError, match=r"'attribution.steps' \(config file '.*', line 5\): -3"):
        load_config(path)
    path = write(tmp_path, "input:\n  pattern: a/*.png\nattribution:\n  stpes: 3\n")
    with pytest.raises(ConfigError, match=r"'attribution.stpes' \(config file '.*', line 4\) \(did you mean "
                                          r"'attribution.steps'\?\)"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"'attribution.steps' \(--set attribution.steps=0\)"):
        load_config(None, [PATTERN, "attribution.steps=0"])


def test_a_missing_config_file_shows_the_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"'{tmp_path}/nope.yaml' not found"):
        load_config("nope.yaml")


@pytest.mark.parametrize("method, setting, value", [
    ("occlusion", "steps", 8), ("grad_cam", "smoothing", "smoothgrad"), ("gradients", "baseline", "white"),
    ("expected_gradients", "rule", "trapezoid"), ("integrated_gradients", "window", 4),
    ("gradient_x_input", "references", 4), ("occlusion", "layer", "conv")])
def test_a_setting_the_method_does_not_read_is_refused_naming_the_method(tmp_path, method, setting, value):
    path = write(tmp_path, f"""
input:
  pattern: data/*/*.png
attribution:
  method: {method}
  {setting}: {value}
""")
    with pytest.raises(ConfigError, match=rf"attribution.{setting} \(.*line 6\) is not used by method '{method}'"):
        load_config(path)


def test_settings_the_method_reads_or_left_at_their_default_are_accepted(tmp_path):
    from igaudit.transforms.attribution.choices import COMMON_SETTINGS, METHOD_SETTINGS
    assert load_config(LOCAL_YAML, ["attribution.method=occlusion"]).attribution.method == "occlusion"   # defaults
    assert load_config(None, ["input.pattern=x/*/*.png", "attribution.method=occlusion", "attribution.window=4",
                              "attribution.batch_size=2"]).attribution.window == 4
    assert load_config(None, ["input.pattern=x/*/*.png", "attribution.method=gradients",
                              "attribution.smoothing=vargrad"]).attribution.smoothing == "vargrad"
    every = set(COMMON_SETTINGS).union(*METHOD_SETTINGS.values())
    from igaudit.pipeline.config import AttributionConfig
    import dataclasses
    assert every == {f.name for f in dataclasses.fields(AttributionConfig)}     # each setting is read by someone
