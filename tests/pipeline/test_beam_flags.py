"""pipeline/beam_flags.py: unknown flags and runners refused with the closest name; ignored flags warned."""
import pytest

from igaudit.pipeline import beam_flags
from igaudit.pipeline.errors import UserError


@pytest.mark.parametrize("args, named", [
    (["--stes=3"], "--set attribution.steps=..."),
    (["--direct_num_worker=2"], "--direct_num_workers"),
    (["--outputdir=x"], "--set output.dir=..."),
    (["--runner=DataflowRunner", "--num_worker", "2"], "--num_workers"),
])
def test_unknown_flags_name_the_closest(args, named):
    with pytest.raises(UserError, match="unknown Beam flag") as e:
        beam_flags.check(args)
    assert named in str(e.value)


@pytest.mark.parametrize("runner, named", [("DirectRuner", "DirectRunner"), ("flnk", "FlinkRunner"),
                                           ("Spark-Runner", "SparkRunner")])
def test_unknown_runners_list_the_runners(runner, named):
    with pytest.raises(UserError, match=f"unknown runner '{runner}'") as e:
        beam_flags.check([f"--runner={runner}"])
    assert named in str(e.value) and all(r in str(e.value) for r in beam_flags.RUNNERS)


def test_dask_is_refused_with_the_reason():
    with pytest.raises(UserError, match="loses data"):
        beam_flags.check(["--runner", "DaskRunner"])


@pytest.mark.parametrize("args, warned", [
    (["--direct_num_workers=2", "--direct_running_mode=multi_processing"], []),
    (["--runner=DataflowRunner", "--direct_num_workers=2"], ["--direct_num_workers is ignored by DataflowRunner"]),
    (["--num_workers=3"], ["--num_workers is ignored by the local runner"]),
    (["--runner=FlinkRunner", "--flink_master=host:8081", "--environment_type=LOOPBACK"], []),
    (["--flink_master=host:8081"], ["--flink_master is ignored by the local runner"]),
    (["--runner=PortableRunner", "--job_endpoint=localhost:1", "--spark_master_url=x"],
     ["--spark_master_url is ignored by PortableRunner"]),
    (["--runner=apache_beam.runners.portability.flink_runner.FlinkRunner", "--parallelism=2"], []),
])
def test_flags_the_runner_ignores_are_warnings(args, warned):
    assert [w.split("flag ", 1)[1] for w in beam_flags.check(args)] == warned


def test_secrets_are_hidden_before_run_json_and_the_report():
    from igaudit.pipeline.beam_flags import redacted, redacted_config
    assert redacted(["--runner=DirectRunner", "--s3_secret_access_key=abc", "--s3_access_key_id", "AKIA",
                     "--direct_num_workers", "2", "--gcs_token=x"]) == \
        ["--runner=DirectRunner", "--s3_secret_access_key=***", "--s3_access_key_id", "***",
         "--direct_num_workers", "2", "--gcs_token=***"]
    config = {"model": {"path": "m.keras"}, "beam": {"s3_secret_access_key": "abc", "direct_num_workers": 2}}
    assert redacted_config(config) == {"model": {"path": "m.keras"},
                                       "beam": {"s3_secret_access_key": "***", "direct_num_workers": 2}}
    assert config["beam"]["s3_secret_access_key"] == "abc"          # the job's own config is left alone
    assert redacted_config({"model": {}}) == {"model": {}}
    hook = {"analysis": {"alert_on": "new", "notify": {"url": "https://hooks.example.com/T0/B1/secret", "on": [3]}}}
    assert redacted_config(hook)["analysis"] == {"alert_on": "new",
                                                 "notify": {"url": "https://hooks.example.com/***", "on": [3]}}
    assert hook["analysis"]["notify"]["url"].endswith("/secret")
