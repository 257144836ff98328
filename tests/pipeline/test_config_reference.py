"""pipeline/config_reference.py: the configuration reference written from the schema: defaults as YAML, one line a
field with its description, long ones wrapped, and the document's block replaced in place."""
import dataclasses

import pytest
import yaml

from igaudit.pipeline import config
from igaudit.pipeline import config_reference as ref


def test_defaults_are_written_as_yaml_that_reads_back():
    for value in (None, True, 0.15, 64000000, "auto", "data/train/*/*.png", (0.0, 1.0), (1, 3, 4), {}, "yes", "1e3"):
        written = ref.yaml_value(value)
        assert "\n" not in written
        assert yaml.safe_load(written) == (list(value) if isinstance(value, tuple) else value)


def test_the_walk_follows_the_schema_and_its_nested_sections():
    walked = {key: (default, section) for key, default, section in ref.fields()}
    assert walked["input.tfrecord"] == (None, True) and walked["input.tfrecord.image"] == ("image/encoded", False)
    assert walked["analysis.notify.on"] == ((1, 3, 4), False)
    assert walked["attribution.steps"] == (config.AttributionConfig().steps, False)
    assert walked["beam"] == ({}, False)


def test_every_line_fits_and_long_descriptions_wrap_under_the_comment_column():
    lines = ref.reference_yaml().splitlines()
    assert max(len(line) for line in lines) <= ref.WIDTH
    continued = [line for line in lines if line.startswith(" " * ref.COMMENT_AT + "#   ")]
    assert continued, "some descriptions are long enough to wrap"
    assert all(line.lstrip().startswith("#") or ":" in line for line in lines)


def test_the_block_loads_to_the_schema_defaults():
    raw, _ = config.parse_yaml(ref.reference_yaml(), "reference")     # igaudit's loader: `on:` stays a key
    assert raw["input"]["pattern"] == ref.EXAMPLES["input.pattern"]
    loaded = config.from_dict(raw)
    assert loaded == dataclasses.replace(config.Config(), input=config.InputConfig(pattern=ref.EXAMPLES["input.pattern"]))


def test_the_documents_block_is_replaced_and_the_rest_kept():
    document = "# Title\n\nBefore.\n\n```yaml\ninput:\n  old: 1\n```\n\nAfter.\n"
    out = ref.with_reference(document)
    assert out.startswith("# Title\n\nBefore.\n\n```yaml\ninput:") and out.endswith("```\n\nAfter.\n")
    assert "old: 1" not in out and ref.reference_yaml() in out
    with pytest.raises(ValueError, match="no ```yaml block"):
        ref.with_reference("no block here")
