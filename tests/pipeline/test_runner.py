"""pipeline/runner.py: which runners have remote workers, shipping igaudit's code to them, the options the
launcher sends, the shipped runner configs, and the sdist Beam builds from setup.py."""
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from igaudit.pipeline.config import from_dict, load_config
from igaudit.pipeline.runner import SETUP_FILE, pipeline_options, runs_on_remote_workers, worker_code_options
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]


# -- shipping code to workers ---------------------------------------------------------------------
def options_of(*args) -> dict:
    from apache_beam.options.pipeline_options import PipelineOptions
    return PipelineOptions(list(args)).get_all_options()


@pytest.mark.parametrize("args, remote", [
    ([], False),
    (["--runner=DirectRunner"], False),
    (["--runner=PrismRunner"], False),
    (["--runner=DataflowRunner"], True),
    (["--runner=dataflow"], True),
    (["--runner=PortableRunner", "--job_endpoint=localhost:8099"], True),              # DOCKER by default
    (["--runner=PortableRunner", "--environment_type=LOOPBACK"], False),
    (["--runner=PortableRunner", "--environment_type=EXTERNAL", "--environment_config=w:50000"], True),
    (["--runner=FlinkRunner"], False),                                                  # [auto]: local Flink
    (["--runner=FlinkRunner", "--flink_master=flink:8081"], True),
    (["--runner=FlinkRunner", "--flink_master=flink:8081", "--environment_type=LOOPBACK"], False),
    (["--runner=SparkRunner"], False),                                                  # local[4]
    (["--runner=SparkRunner", "--spark_master_url=spark://m:7077"], True),
])
def test_which_runners_have_remote_workers(args, remote):
    assert runs_on_remote_workers(options_of(*args)) is remote


def test_worker_code_options_adds_the_setup_file_only_when_needed():
    setup = f"--setup_file={SETUP_FILE}"
    assert worker_code_options(options_of()) == []
    assert worker_code_options(options_of("--direct_num_workers=2")) == []
    assert worker_code_options(options_of("--runner=DataflowRunner")) == [setup]
    assert worker_code_options(options_of("--runner=FlinkRunner", "--flink_master=f:8081",
                                          "--environment_type=PROCESS")) == [setup]
    # something else already ships the code
    for given in (["--setup_file=/x/setup.py"], ["--extra_package=/x/igaudit.tar.gz"],
                  ["--extra_packages=/x/igaudit.tar.gz"], ["--sdk_container_image=img:1"],
                  ["--environment_type=DOCKER", "--environment_config=img:1"], ["--environment_config=img:1"],
                  ["--environment_type=DOCKER", "--environment_option=docker_container_image=img:1"],
                  ["--environment_type=EXTERNAL", "--environment_config=localhost:50000"]):   # a worker pool
        assert worker_code_options(options_of("--runner=PortableRunner", *given)) == [], given
    assert worker_code_options(options_of("--runner=DataflowRunner", "--sdk_container_image=img:1")) == []
    # an installed (non-checkout) igaudit has no setup.py to ship
    assert worker_code_options(options_of("--runner=DataflowRunner"), setup_file=Path("/nonexistent/setup.py")) == []


def test_launcher_adds_setup_file_to_the_options_beam_sends(tiny_assets, tmp_path):
    cfg = from_dict(tiny_config(tiny_assets, tmp_path / "o", beam={"runner": "FlinkRunner",
                                                                   "flink_master": "flink:8081"}))
    sent = pipeline_options(cfg, ["--environment_type=PROCESS"]).get_all_options()
    assert sent["setup_file"] == str(SETUP_FILE) and sent["flink_master"] == "flink:8081"
    assert pipeline_options(cfg, []).get_all_options()["setup_file"] == str(SETUP_FILE)   # DOCKER, no image
    assert pipeline_options(cfg, ["--environment_type=LOOPBACK"]).get_all_options()["setup_file"] is None


def test_shipped_dataflow_config_options():
    cfg = load_config(ROOT / "configs" / "dataflow.yaml")
    assert cfg.input.pattern.startswith("gs://") and cfg.model.path.startswith("gs://")
    assert cfg.output.dir.startswith("gs://")
    sent = pipeline_options(cfg, []).get_all_options()
    assert sent["runner"] == "DataflowRunner"
    for key in ("project", "region", "temp_location", "staging_location", "machine_type", "sdk_container_image"):
        assert sent[key], key
    assert sent["temp_location"].startswith("gs://") and sent["staging_location"].startswith("gs://")
    accelerator = [o for o in sent["resource_hints"] if o.startswith("accelerator=")]    # a Beam resource hint
    assert accelerator == ["accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"]
    assert sent["machine_type"].startswith("n1-")          # T4s attach to N1 machines
    assert sent["setup_file"] is None and not sent["extra_packages"]   # the container has the code
    assert sent["sdk_location"] == "container"              # and Beam too: nothing to stage
    assert sent["num_workers"] >= 1 and sent["max_num_workers"] >= sent["num_workers"]
    # the same config with the image removed ships the code as an sdist instead
    no_image = pipeline_options(cfg, ["--sdk_container_image="]).get_all_options()
    assert no_image["setup_file"] == str(SETUP_FILE)


def test_shipped_flink_config_options():
    cfg = load_config(ROOT / "configs" / "flink.yaml")
    sent = pipeline_options(cfg, []).get_all_options()
    assert sent["runner"] == "FlinkRunner"
    assert re.fullmatch(r"[\w.-]+:8081", sent["flink_master"])
    assert sent["environment_type"] == "DOCKER" and sent["environment_config"]
    assert runs_on_remote_workers(sent) and sent["setup_file"] is None      # the container has the code
    assert sent["flink_version"] in ("1.19", "1.20", "2.0", "2.1", "2.2")
    assert sent["flink_submit_uber_jar"] is True           # only the REST port has to be reachable
    # PROCESS workers run our boot command on the task managers: the launcher ships an sdist
    process = pipeline_options(cfg, ["--environment_type=PROCESS",
                                     '--environment_config={"command": "/opt/apache/beam/boot"}'])
    assert process.get_all_options()["setup_file"] == str(SETUP_FILE)


@pytest.mark.slow   # runs setup.py sdist in a subprocess
def test_setup_py_builds_an_sdist_with_the_code(tmp_path):
    """What Beam's stager does with --setup_file (its fallback when `build` is not installed)."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        (project / name).write_bytes((ROOT / name).read_bytes())
    for package in ("pipeline", "transforms"):   # with their subpackages (transforms/attribution, ...)
        for f in (ROOT / package).rglob("*"):
            if f.is_file() and f.suffix in (".py", ".html", ".j2") and "__pycache__" not in f.parts:
                target = project / f.relative_to(ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(f.read_bytes())
    done = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path / "dist")],
                          cwd=project, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (sdist,) = (tmp_path / "dist").glob("igaudit-*.tar.gz")
    names = tarfile.open(sdist).getnames()
    for module in ("pipeline/job.py", "pipeline/cli.py", "transforms/attribution/integrated_gradients.py",
                   "transforms/attribute.py", "transforms/analysis/skew/rows.py", "transforms/imaging/render.py",
                   "pipeline/templates/report.html.j2"):
        assert any(n.endswith(module) for n in names), module
