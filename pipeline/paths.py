"""Paths in messages and comparisons: local paths are relative to the current directory (the one rule for
every relative path, in a config file or on the command line) and are shown absolute; bucket paths
(gs://, s3://, ...) are text."""
from __future__ import annotations

import os


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def shown(path: str) -> str:
    """A path as a message shows it: absolute when local."""
    if is_remote(path):
        return path
    return os.path.abspath(path[len("file://"):] if path.startswith("file://") else path)


def normal(path: str) -> str:
    """A path for comparisons: local ones absolute with links resolved, remote ones without a trailing '/'."""
    return path.rstrip("/") if is_remote(path) else os.path.realpath(shown(path))


def within(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or lies under it (both `normal`)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def parent(path: str) -> str:
    """The folder part of a path or glob ('.' for a bare name)."""
    head = path.rpartition("/")[0]
    return head or ("/" if path.startswith("/") else ".")
