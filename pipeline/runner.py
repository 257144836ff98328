"""Pipeline options and the runner: Beam flags from the config and the command line, and shipping igaudit to remote workers."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from igaudit.pipeline.beam_flags import known_flags, runner_key
from igaudit.pipeline.config import Config

log = logging.getLogger("igaudit")


def config_flags(cfg: Config) -> list[str]:
    """The config's `beam:` section as command-line flags (false: Beam's --no_<key> where it has one, else
    nothing, a switch's default being off)."""
    flags = []
    for key, value in cfg.beam.items():
        if isinstance(value, bool):
            if value:
                flags.append(f"--{key}")
            elif f"--no_{key}" in known_flags():
                flags.append(f"--no_{key}")
        elif isinstance(value, list):
            flags.extend(f"--{key}={v}" for v in value)
        else:
            flags.append(f"--{key}={value}")
    return flags


def pipeline_options(cfg: Config, beam_args: list[str]) -> PipelineOptions:
    """Config `beam:` options first, then command-line Beam flags (which win)."""
    args = config_flags(cfg) + list(beam_args)
    return PipelineOptions(args + worker_code_options(PipelineOptions(args).get_all_options()))


def use_options(cfg: Config, beam_args: list[str]) -> PipelineOptions:
    """The run's pipeline options, also handed to Beam's FileSystems, so igaudit's own reads and writes
    (inputs listed up front, the model, output.dir, the reference run) use the job's endpoints and
    credentials (e.g. --s3_endpoint_url, --s3_access_key_id) before the job starts."""
    from apache_beam.io.filesystems import FileSystems
    options = pipeline_options(cfg, beam_args)
    FileSystems.set_options(options)
    return options


PROJECT_ROOT = Path(__file__).resolve().parents[1]
SETUP_FILE = PROJECT_ROOT / "setup.py"
_LOCAL_MASTERS = ("[local]", "[auto]")   # FlinkRunner's in-process Flink (LOOPBACK workers)


def runs_on_remote_workers(all_options: dict) -> bool:
    """Whether the SDK workers run somewhere other than this process (so they need our code shipped)."""
    runner = runner_key(all_options.get("runner"))
    if runner in ("dataflow", "testdataflow"):
        return True
    if runner not in ("portable", "flink", "spark"):
        return False                   # FnApiRunner (our default), DirectRunner, Prism: workers are local
    environment = (all_options.get("environment_type") or "").upper()
    if environment == "LOOPBACK":
        return False                   # workers are threads of this process
    if not environment:                # Flink/Spark default to LOOPBACK on an in-process master
        if runner == "flink" and (all_options.get("flink_master") or "[auto]").strip() in _LOCAL_MASTERS:
            return False
        if runner == "spark" and re.match(r"^local(\[.+\])?$", all_options.get("spark_master_url") or "local[4]"):
            return False
    return True                        # PortableRunner defaults to DOCKER


def runs_locally(all_options: dict) -> bool:
    """Whether the SDK workers are this process or its children (they see its environment and files)."""
    return not runs_on_remote_workers(all_options)


def _container_given(all_options: dict) -> bool:
    """Whether the workers' environment already holds igaudit: a container image, or an EXTERNAL worker
    pool (started by the user from igaudit's image or an environment with igaudit installed)."""
    if all_options.get("sdk_container_image") or all_options.get("worker_harness_container_image"):
        return True
    environment = (all_options.get("environment_type") or "").upper()
    if environment == "EXTERNAL":
        return True
    env_options = all_options.get("environment_options") or []
    return environment in ("DOCKER", "") and bool(   # unset: the portable runners' default is DOCKER
        all_options.get("environment_config")
        or any(o.startswith("docker_container_image=") for o in env_options))


def worker_code_options(all_options: dict, setup_file: Path = SETUP_FILE) -> list[str]:
    """Extra Beam flags that ship igaudit to remote workers: `--setup_file=<project>/setup.py`.

    Added only when the runner's workers are remote (Dataflow, Flink, Spark, PortableRunner
    with a non-LOOPBACK environment) and nothing else ships the code: no --setup_file, no
    --extra_package(s), no container (--sdk_container_image, or a DOCKER environment_config), no EXTERNAL
    worker pool (started from igaudit's image or an environment with igaudit installed),
    since a container built from docker/Dockerfile already has the project installed.
    """
    if not runs_on_remote_workers(all_options):
        return []
    if all_options.get("setup_file") or all_options.get("extra_packages") or _container_given(all_options):
        return []
    if not Path(setup_file).is_file():
        log.warning("igaudit is not installed from a source checkout (no %s): remote workers will not get "
                    "its code unless you pass --sdk_container_image or --extra_package", setup_file)
        return []
    return [f"--setup_file={setup_file}"]



def make_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """Use the requested runner; with none, the in-process FnApiRunner.

    Beam's default DirectRunner first tries to download and start a Prism
    binary, which fails offline; going straight to the FnApiRunner keeps the
    local default offline and deterministic. It honours --direct_num_workers
    and --direct_running_mode.
    """
    if options.get_all_options().get("runner"):
        return beam.Pipeline(options=options)
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return beam.Pipeline(runner=fn_runner.FnApiRunner(provision_info=provision), options=options)
