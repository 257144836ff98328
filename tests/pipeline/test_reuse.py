"""pipeline/reuse.py: the reuse key changes with the model and every setting that shapes a row, not with speed
settings or where the model lives; a reference run serves only with the same key and no dataset-wide baseline."""
import dataclasses

from igaudit.pipeline import config, reuse

CLASSES = ["ant", "bee"]
DECODE = {"size": [24, 24], "resize": "pad", "max_pixels": 1000, "channels": 3}


def cfg(reference="out/runs/run=1", **sections):
    base = config.Config(input=config.InputConfig(pattern="data/*/*.png"),
                         analysis=config.AnalysisConfig(reference=reference))
    return dataclasses.replace(base, **{name: dataclasses.replace(getattr(base, name), **fields)
                                        for name, fields in sections.items()})


def key(c=None, model_hash="m1", classes=CLASSES, decode=DECODE):
    return reuse.reuse_key(c or cfg(), classes, decode, model_hash)


def test_the_key_changes_with_the_model_the_classes_the_decode_and_shaping_settings():
    same = key()
    assert same == key() and len(same) == 32
    changed = [key(model_hash="m2"), key(classes=["ant", "wasp"]), key(decode={**DECODE, "resize": "crop"}),
               key(cfg(attribution={"steps": 32, "rule": "trapezoid"})), key(cfg(attribution={"baseline": "white"})),
               key(cfg(model={"input_range": (-1.0, 1.0)})), key(cfg(render={"polarity": "both"})),
               key(cfg(output={"raw": True})), key(cfg(analysis={"grid": 8})), key(cfg(quality={"enabled": True}))]
    assert same not in changed and len(set(changed)) == len(changed)


def test_the_key_ignores_speed_settings_and_where_things_are():
    same = key()
    assert key(cfg(attribution={"batch_size": 4, "chunk_size": 8, "jit_compile": True})) == same
    assert key(cfg(model={"path": "elsewhere/demo.keras", "share_across_processes": True})) == same
    assert key(cfg(output={"dir": "out/other"}, reference="out/other/run=0")) == same
    assert key(cfg(analysis={"max_tests": 5, "intervention_sample": 8})) == same     # analysis reads the rows


def test_a_reference_with_the_same_key_serves():
    c = cfg()
    assert reuse.reuse_source(c, "k", {"reuse_key": "k"}) == ("out/runs/run=1", None)


def test_nothing_is_reused_without_a_reference_or_with_reuse_off():
    assert reuse.reuse_source(cfg(reference=None), "k", None) == (None, None)
    assert reuse.reuse_source(cfg(audit={"reuse": False}), "k", {"reuse_key": "k"}) == (None, None)


def test_a_changed_key_or_an_older_reference_says_why_nothing_is_reused():
    src, why = reuse.reuse_source(cfg(), "k", {"reuse_key": "other"})
    assert src is None and "the model or a setting that shapes the rows changed" in why
    src, why = reuse.reuse_source(cfg(), "k", {"config": {}})
    assert src is None and "predates audit.reuse" in why


def test_dataset_wide_attributions_are_never_reused():
    for c, what in ((cfg(attribution={"baseline": "mean"}), "mean image"),
                    (cfg(attribution={"method": "expected_gradients"}), "draws its baselines")):
        src, why = reuse.reuse_source(c, "k", {"reuse_key": "k"})
        assert src is None and what in why
    assert reuse.dataset_wide(cfg()) is None
