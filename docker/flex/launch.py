"""Flex Template entry point (FLEX_TEMPLATE_PYTHON_PY_FILE): `igaudit run` from template parameters.

The launcher calls this file with the template's parameters (see metadata.json) and Dataflow's
own pipeline options, all as `--name=value`:
    --config=gs://bucket/igaudit/dataflow.yaml      the YAML config (any Beam filesystem, or local)
    --set=attribution.steps=100;output.raw=true     optional overrides, separated by ';'
    --project=... --region=... --temp_location=...  passed on to Beam untouched
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile


def cli_args(argv: list[str], local_config: str | None = None) -> list[str]:
    """The `igaudit` command line for these launcher arguments (config read from `local_config`)."""
    parser = argparse.ArgumentParser(prog="launch.py", add_help=False)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", default="")
    args, beam_args = parser.parse_known_args(argv)
    command = ["run", "--config", local_config or args.config]
    for assignment in (a.strip() for a in args.overrides.split(";")):
        if assignment:
            command += ["--set", assignment]
    return command + ["--"] + beam_args


def fetch_config(path: str) -> str:
    """A local copy of a config on a Beam filesystem (gs://...), or the path itself if local."""
    if "://" not in path:
        return path
    from apache_beam.io.filesystems import FileSystems
    with FileSystems.open(path) as src:
        data = src.read()
    fd, local = tempfile.mkstemp(prefix="igaudit-config-", suffix=".yaml")
    with os.fdopen(fd, "wb") as dst:
        dst.write(data)
    return local


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", required=True)
    known, _ = config.parse_known_args(argv)
    from igaudit.pipeline.cli import main as igaudit
    return igaudit(cli_args(argv, fetch_config(known.config)))


if __name__ == "__main__":
    sys.exit(main())
