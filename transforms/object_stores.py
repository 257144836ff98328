"""Object-store clients made once, not once per call.

Beam's S3 and GCS filesystems build a new client for every call: `S3IO()` makes a boto3 session and
client (`apache_beam.io.aws.clients.s3.boto3_client.Client`, about 0.2-0.4 s of CPU each: botocore loads
its service model), `GcsIO()` a `storage.Client` (`apache_beam.io.gcp.gcsio.create_storage_client`); each
comes with its own connection pool, so no connection is reused either. A run makes several such calls per
image (read it, write its mask and overlay); on GCS the client making was most of a bucket run's time
(`benchmarks/buckets.py`). `reuse_clients` makes S3 calls share one
client per process and settings (boto3's low-level clients are thread-safe; its sessions are not, so one
is made for each client), and GCS calls one client per thread and options object (the storage client's
HTTP session is not documented as thread-safe). Beam's own wrappers are untouched (each keeps its own download
state); only where their client comes from changes. Called when igaudit's stages are imported (launcher and
workers alike); a Beam without these modules is left alone.
"""
from __future__ import annotations

import threading

_LOCAL = threading.local()
_SHARED: dict = {}
_LOCK = threading.Lock()
_DONE = False


_PER_THREAD = 8      # clients a thread keeps (oldest out first): a caller passing new options each time stays bounded


def _per_thread(kind: str, key, make):
    cache = getattr(_LOCAL, kind, None)
    if cache is None:
        cache = {}
        setattr(_LOCAL, kind, cache)
    if key not in cache:
        if len(cache) >= _PER_THREAD:
            del cache[next(iter(cache))]
        cache[key] = make()
    return cache[key]


def _per_process(key, make):
    with _LOCK:
        if key not in _SHARED:
            _SHARED[key] = make()
        return _SHARED[key]


class _Session:
    """Stands in for `boto3.session.Session()` inside Beam's S3 client wrapper: its `client(...)` is made once
    per process and arguments."""

    def __init__(self, boto3):
        self._boto3 = boto3

    def client(self, **kwargs):
        key = ("s3", repr(sorted(kwargs.items(), key=lambda kv: kv[0])))
        return _per_process(key, lambda: self._boto3.session.Session().client(**kwargs))


class _Boto3:
    """The `boto3` module as Beam's S3 client wrapper sees it: the same, but for `session.Session`."""

    def __init__(self, boto3):
        self._boto3 = boto3
        self.session = self

    def Session(self):      # noqa: N802 - boto3's name
        return _Session(self._boto3)

    def __getattr__(self, name):
        return getattr(self._boto3, name)


def reuse_clients() -> None:
    """Make Beam's S3 and GCS filesystems reuse their clients (idempotent)."""
    global _DONE
    if _DONE:
        return
    _DONE = True
    try:
        from apache_beam.io.aws.clients.s3 import boto3_client
    except ImportError:              # Beam without its aws extra: no S3 filesystem to change
        boto3_client = None
    if getattr(boto3_client, "boto3", None) is not None and not isinstance(boto3_client.boto3, _Boto3):
        boto3_client.boto3 = _Boto3(boto3_client.boto3)
    try:
        from apache_beam.io.gcp import gcsio
    except ImportError:
        return
    make = gcsio.create_storage_client
    if getattr(make, "_igaudit", False):
        return

    def create_storage_client(pipeline_options, use_credentials=True):
        # keyed by the options object itself (a filesystem passes the same one on every call; reading its
        # values would cost an argparse pass per call), which the cache holds so its id is never reused
        key = (id(pipeline_options), use_credentials)
        return _per_thread("gcs", key, lambda: (pipeline_options, make(pipeline_options, use_credentials)))[1]

    create_storage_client._igaudit = True
    create_storage_client._beam = make
    gcsio.create_storage_client = create_storage_client


def beam_as_is() -> None:
    """Undo `reuse_clients` in this process (benchmarks/buckets.py times Beam's filesystems both ways)."""
    global _DONE
    from apache_beam.io.aws.clients.s3 import boto3_client
    from apache_beam.io.gcp import gcsio
    if isinstance(boto3_client.boto3, _Boto3):
        boto3_client.boto3 = boto3_client.boto3._boto3
    gcsio.create_storage_client = getattr(gcsio.create_storage_client, "_beam", gcsio.create_storage_client)
    _DONE = False
