"""transforms/object_stores.py: Beam's S3 and GCS filesystems reuse their clients instead of building one per
call (no server needed: making a client contacts nothing)."""
import threading

from apache_beam.options.pipeline_options import PipelineOptions

import igaudit.transforms  # noqa: F401 - importing igaudit's stages makes the filesystems reuse clients

S3_ARGS = ["--s3_endpoint_url=http://127.0.0.1:9", "--s3_access_key_id=testing", "--s3_secret_access_key=testing",
           "--s3_region_name=us-east-1"]


def test_s3_calls_share_one_boto3_client_per_settings():
    from apache_beam.io.aws.clients.s3 import boto3_client
    options = PipelineOptions(S3_ARGS)
    first, second = boto3_client.Client(options), boto3_client.Client(PipelineOptions(S3_ARGS))
    assert first.client is second.client                       # one boto3 client for the same settings
    assert first is not second and first._download_pos == 0   # each wrapper keeps its own download state
    other = boto3_client.Client(PipelineOptions(S3_ARGS[:-1] + ["--s3_region_name=eu-west-1"]))
    assert other.client is not first.client                    # other settings, another client
    seen = []
    worker = threading.Thread(target=lambda: seen.append(boto3_client.Client(options).client))
    worker.start()
    worker.join()
    assert seen[0] is first.client                             # thread-safe: shared across threads


def test_gcs_calls_reuse_one_storage_client_per_thread_and_options():
    from apache_beam.io.gcp import gcsio
    options = PipelineOptions(["--project=test"])
    first = gcsio.create_storage_client(options, use_credentials=False)
    assert gcsio.create_storage_client(options, use_credentials=False) is first
    assert gcsio.create_storage_client(PipelineOptions(["--project=test"]), use_credentials=False) is not first
    seen = []
    worker = threading.Thread(target=lambda: seen.append(gcsio.create_storage_client(options, use_credentials=False)))
    worker.start()
    worker.join()
    assert seen[0] is not first                                # a thread of its own: its own client


def test_a_thread_keeps_a_bounded_number_of_clients():
    from apache_beam.io.gcp import gcsio

    from igaudit.transforms import object_stores
    made = [gcsio.create_storage_client(PipelineOptions(["--project=test"]), use_credentials=False)
            for _ in range(object_stores._PER_THREAD + 5)]
    assert len({id(c) for c in made}) == len(made)                     # new options each time: new clients
    assert len(object_stores._LOCAL.gcs) == object_stores._PER_THREAD  # ... but only so many kept


def test_beam_as_is_undoes_the_reuse_and_reuse_redoes_it():
    from apache_beam.io.aws.clients.s3 import boto3_client
    from apache_beam.io.gcp import gcsio

    from igaudit.transforms import object_stores
    object_stores.beam_as_is()
    try:
        assert boto3_client.Client(PipelineOptions(S3_ARGS)).client is not boto3_client.Client(
            PipelineOptions(S3_ARGS)).client                        # Beam as it comes: a client per call
        assert not getattr(gcsio.create_storage_client, "_igaudit", False)
    finally:
        object_stores.reuse_clients()
    assert boto3_client.Client(PipelineOptions(S3_ARGS)).client is boto3_client.Client(PipelineOptions(S3_ARGS)).client
