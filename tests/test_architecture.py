"""The layout's rules, checked on the source itself: one import name, no import cycle, small modules,
a config that parses without TensorFlow, and a wheel whose only top-level package is igaudit."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"pipeline": "igaudit.pipeline", "transforms": "igaudit.transforms"}   # folder -> import name
SCANNED = ("pipeline", "transforms", "tests", "benchmarks", "docker")
MAX_LINES = 450
BARE = tuple(PACKAGES)          # the folder names, which must never be imported as top-level packages
_BARE_IN_TEXT = re.compile(r"\b(?:from|import)\s+(?:%s)\b" % "|".join(BARE))   # e.g. code passed to python -c


def python_files(folders=SCANNED):
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _is_bare(name: str) -> bool:
    return name.split(".")[0] in BARE


def bare_imports(source: str) -> list[str]:
    """Every bare `pipeline` / `transforms` import in `source`: import statements (any depth, any
    function), importlib.import_module("...") calls, and code in string constants (python -c ...)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if _is_bare(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _is_bare(node.module):
            found.append(node.module)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and _is_bare(node.args[0].value)):
            found.append(node.args[0].value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _BARE_IN_TEXT.search(node.value):
            found.append(_BARE_IN_TEXT.search(node.value).group(0))
    return found


@pytest.mark.parametrize("snippet", [
    "import " + BARE[0], "import " + BARE[1] + ".read as r", "from " + BARE[0] + ".config import load_config",
    "def f():\n    from " + BARE[1] + " import records\n", "importlib.import_module('" + BARE[1] + "')",
    "subprocess.run([sys.executable, '-c', 'import " + BARE[0] + ".cli'])",
])
def test_the_bare_import_check_catches_every_form(snippet):
    assert bare_imports(snippet)


def test_no_module_test_or_benchmark_imports_a_bare_top_level_folder():
    me = Path(__file__).resolve()
    offenders = {str(p.relative_to(ROOT)): bare_imports(p.read_text()) for p in python_files() if p != me}
    assert {k: v for k, v in offenders.items() if v} == {}


# -- import cycles -----------------------------------------------------------------------------------------
def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_modules(source: str, known: set[str]) -> set[str]:
    """igaudit modules a source imports, at any depth (function-level imports count), except under
    `if TYPE_CHECKING:` (annotations only, never executed). `from pkg import name` counts as importing
    pkg.name when that is a module, else pkg."""
    out = set()

    def visit(node):
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in known:
                    out.add(sub)
                elif node.module in known:
                    out.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return out


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in python_files(("pipeline", "transforms"))}
    graph = {name: imported_modules(path.read_text(), set(files)) for name, path in files.items()}
    # The method registry imports the method modules by name at run time (importlib): count those edges.
    from igaudit.transforms.attribution.choices import METHODS
    graph["igaudit.transforms.attribution.registry"] |= {f"igaudit.transforms.attribution.{m}" for m in METHODS}
    return graph


def find_cycle(graph: dict[str, set[str]]):
    """One import cycle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import():
    a = "import igaudit.x.b\n"
    b = "def f():\n    from igaudit.x.c import thing\n"
    c = "from igaudit.x import a\n"
    known = {"igaudit.x.a", "igaudit.x.b", "igaudit.x.c"}
    graph = {name: imported_modules(src, known) for name, src in zip(sorted(known), (a, b, c))}
    assert find_cycle(graph) == ["igaudit.x.a", "igaudit.x.b", "igaudit.x.c", "igaudit.x.a"]
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from igaudit.x import a\n"
    graph["igaudit.x.c"] = imported_modules(guarded, known)
    assert find_cycle(graph) is None


def test_no_import_cycle_in_the_package():
    assert find_cycle(import_graph()) is None


def test_no_module_is_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in python_files(("pipeline", "transforms"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_engines_and_analysis_do_not_import_beam():
    """The subpackages are the Beam-free engines; the Beam stages sit at transforms/ top level."""
    beam_users = [str(p.relative_to(ROOT)) for folder in ("attribution", "analysis", "imaging")
                  for p in (ROOT / "transforms" / folder).glob("*.py") if "apache_beam" in p.read_text()
                  and not p.name == "model_files.py"]     # model_files copies models off buckets via FileSystems
    assert beam_users == []


@pytest.mark.slow     # a fresh interpreter
def test_parsing_a_config_imports_no_tensorflow(tmp_path):
    code = ("import sys, igaudit.pipeline.config as c; c.load_config(None, ['input.pattern=x/*/*.png', 'attribution.method=occlusion', 'attribution.window=4']); "
            "assert 'tensorflow' not in sys.modules, sorted(m for m in sys.modules if 'tensorflow' in m)[:3]")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


@pytest.mark.slow
def test_the_wheel_installs_one_top_level_package_igaudit(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, timeout=300)
    wheel, = (tmp_path / "dist").glob("igaudit-*.whl")
    with zipfile.ZipFile(wheel) as z:
        tops = {name.split("/")[0] for name in z.namelist()}
        assert "igaudit/pipeline/templates/report.html.j2" in z.namelist()     # the report's template ships
    assert {t for t in tops if not t.endswith(".dist-info")} == {"igaudit"}
    # a clean venv: the wheel without its dependencies, which come from this venv's site-packages by a .pth
    # (an editable install's own .pth there is not processed from a path added this way)
    venv = tmp_path / "clean"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python*/site-packages"))
    ours = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "apache_beam").is_dir())
    (site / "deps.pth").write_text(str(ours) + "\n")
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    helped = subprocess.run([str(venv / "bin" / "igaudit"), "--help"], cwd=elsewhere, capture_output=True, text=True,
                            timeout=120)
    assert helped.returncode == 0 and "run" in helped.stdout
    for bare in BARE:
        r = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {bare}"], cwd=elsewhere, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr
    r = subprocess.run([str(venv / "bin" / "python"), "-c", "import igaudit.pipeline.config, igaudit.transforms.read"],
                       cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_every_module_has_a_test_file_of_its_name():
    """The tests mirror the source tree: pipeline/x.py is tested in tests/pipeline/test_x.py, transforms/a/b.py in
    tests/transforms/a/test_b.py (whole runs and runners beside them in tests/e2e)."""
    missing = [str(Path("tests", path.parent.relative_to(ROOT), f"test_{path.name}"))
               for path in python_files(PACKAGES) if path.name != "__init__.py"
               if not (ROOT / "tests" / path.parent.relative_to(ROOT) / f"test_{path.name}").is_file()]
    assert missing == [], "modules without a test file of their name"
