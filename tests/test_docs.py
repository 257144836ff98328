"""The docs that mirror code stay in sync with it: the pipeline diagram in docs/architecture.md is the one in
pipeline/build.py's docstring and names exactly the stages build.py wires, and the YAML reference in
docs/configuration.md loads, names every field of the config schema, and shows each field's default."""
from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import apache_beam as beam

from igaudit.pipeline import build, config, config_reference

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
STAGE = re.compile(r"--([A-Z][A-Za-z]*)")   # a stage in the diagram: --Name--> or --Name (...)-->


def fenced_blocks(path: Path, language: str = "") -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), re.S | re.M)


def lines(text: str) -> list[str]:
    """Whitespace-normalised lines: dedented, trailing spaces and blank edges dropped."""
    return [line.rstrip() for line in textwrap.dedent(text).strip("\n").splitlines()]


# -- the pipeline diagram --------------------------------------------------------------------------------------
def documented_diagram() -> str:
    diagrams = [b for b in fenced_blocks(DOCS / "architecture.md") if "-->" in b]
    assert len(diagrams) == 1, "docs/architecture.md must hold exactly one pipeline diagram"
    return diagrams[0]


def docstring_diagram() -> str:
    """build.py's docstring without its first paragraph (the summary line)."""
    return build.__doc__.split("\n\n", 1)[1]


def build_source_tree() -> ast.Module:
    return ast.parse(Path(build.__file__).read_text())


def is_ptransform(name: str) -> bool:
    obj = getattr(build, name, None)
    return isinstance(obj, type) and issubclass(obj, beam.PTransform)


def imported_ptransforms() -> set[str]:
    """The PTransform classes build.py imports from igaudit.transforms and igaudit.pipeline.finalize."""
    names = set()
    for node in ast.walk(build_source_tree()):
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module.startswith("igaudit.transforms") or node.module == "igaudit.pipeline.finalize"):
            names |= {a.asname or a.name for a in node.names if is_ptransform(a.asname or a.name)}
    return names


def used_ptransforms() -> set[str]:
    """The PTransform classes build.py's code instantiates."""
    return {node.func.id for node in ast.walk(build_source_tree())
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and is_ptransform(node.func.id)}


def test_the_documented_diagram_is_build_py_s():
    assert lines(documented_diagram()) == lines(docstring_diagram())


def test_the_diagram_names_exactly_the_stages_build_py_wires():
    stages = set(STAGE.findall(documented_diagram()))
    assert "MatchImages" in stages and "Finalize" in stages      # the pattern reads the diagram at all
    assert stages - used_ptransforms() == set(), "stages in the diagram that build.py does not use"
    assert imported_ptransforms() - stages == set(), "stages build.py imports that the diagram does not show"
    assert used_ptransforms() - stages == set(), "stages build.py uses that the diagram does not show"


def test_the_readme_has_no_other_pipeline_diagram():
    assert not [b for b in fenced_blocks(ROOT / "README.md") if "-->" in b]


# -- the configuration reference ------------------------------------------------------------------------------
# Keys whose documented value is an example, not the default (config_reference.EXAMPLES).
EXAMPLES = set(config_reference.EXAMPLES)


def documented_yaml() -> str:
    blocks = [b for b in fenced_blocks(DOCS / "configuration.md", "yaml") if b.startswith("input:")]
    assert len(blocks) == 1, "docs/configuration.md must hold one YAML reference block starting with input:"
    return blocks[0]


def documented_config(tmp_path) -> tuple[dict, config.Config]:
    path = tmp_path / "documented.yaml"
    path.write_text(documented_yaml())
    raw, _ = config.parse_yaml(documented_yaml(), "docs/configuration.md")
    return raw, config.load_config(path)


def schema_leaves():
    """(dotted key, is a section) for every field of the schema (config_reference's walk, which writes the docs)."""
    return ((key, is_section) for key, _, is_section in config_reference.fields())


def lookup(obj, dotted: str):
    for name in dotted.split("."):
        obj = obj[name] if isinstance(obj, dict) else getattr(obj, name)
    return obj


def test_the_documented_config_is_generated_from_the_schema():
    """docs/configuration.md's block is what `make docs` writes now: a field added, renamed, described or
    given another default in the code without `make docs` fails here."""
    assert documented_yaml() == config_reference.reference_yaml(), "run `make docs` and commit docs/configuration.md"


def test_every_schema_field_is_described():
    keys = [key for key, _, _ in config_reference.fields()]
    assert set(config_reference.HELP) == set(keys)
    assert set(config_reference.EXAMPLES) <= set(keys)


def test_the_documented_config_loads_through_the_config_loader(tmp_path):
    _, cfg = documented_config(tmp_path)
    assert isinstance(cfg, config.Config)


def test_every_schema_field_is_documented(tmp_path):
    raw, _ = documented_config(tmp_path)
    missing = []
    for key, _is_section in schema_leaves():
        parent, _, name = key.rpartition(".")
        holder = lookup(raw, parent) if parent else raw
        if not isinstance(holder, dict) or name not in holder:
            missing.append(key)
    assert missing == [], "config fields missing from docs/configuration.md's YAML block"


def test_every_documented_value_is_the_default(tmp_path):
    _, cfg = documented_config(tmp_path)
    default = config.Config()
    keys = {key for key, is_section in schema_leaves() if not is_section}
    assert EXAMPLES <= keys, "an allow-listed key that is not in the schema"
    differ = {key: (lookup(cfg, key), lookup(default, key)) for key in sorted(keys - EXAMPLES)
              if lookup(cfg, key) != lookup(default, key)}
    assert differ == {}, "documented value != schema default (documented, default)"


def test_the_field_walk_sees_nested_sections_and_leaves():
    walked = dict(schema_leaves())
    assert walked["input.tfrecord"] and walked["analysis.notify"] and walked["render"]
    assert not walked["input.tfrecord.image"] and not walked["analysis.notify.on"] and not walked["beam"]
    assert len(walked) > 80


# -- the layout map ------------------------------------------------------------------------------------------------
def documented_modules() -> set[str]:
    """The module paths docs/architecture.md's layout map lists: each `name.py` under the folders its
    indentation puts it in."""
    block = next(b for b in fenced_blocks(DOCS / "architecture.md") if b.startswith("pipeline/"))
    folders: list[tuple[int, str]] = []
    out = set()
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        first = line.split()[0] if line.strip() else ""
        if first.endswith("/"):
            folders = [f for f in folders if f[0] < indent] + [(indent, first)]
            continue
        folders = [f for f in folders if f[0] < indent]
        names = re.findall(r"\b(\w+\.py)\b", line.split("  ", 1)[0] if not line.startswith(" ") else line.strip())
        out |= {"".join(f for _, f in folders) + name for name in names}
    return out


def test_the_layout_map_lists_every_module_where_it_is():
    root = DOCS.parent
    modules = {str(p.relative_to(root)) for folder in ("pipeline", "transforms") for p in (root / folder).rglob("*.py")
               if p.name != "__init__.py"}
    documented = {m for m in documented_modules() if m.startswith(("pipeline/", "transforms/"))}
    assert sorted(modules - documented) == [], "modules missing from docs/architecture.md's layout map"
    assert sorted(documented - modules) == [], "the layout map names modules that do not exist"
