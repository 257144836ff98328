"""Fixtures of the attribution method tests: a small tanh CNN, engines on it, a batch of images.

Session-scoped: the engines are shared by every test that uses them (their traces too, so a test of
trace counts on `engine` sees it after whatever other tests ran: one trace per function still)."""
import numpy as np
import pytest

from tests.transforms.attribution.helpers import SHAPE, small_cnn


@pytest.fixture(scope="session")
def cnn():
    return small_cnn()


@pytest.fixture(scope="session")
def engine(cnn):
    """One engine shared by many tests (the old AttributionEngine defaults: logits, probability)."""
    from igaudit.transforms.attribution.engine import GradientEngine
    return GradientEngine(cnn, SHAPE, output="logits", score="probability", chunk_size=7)


@pytest.fixture(scope="session")
def other_engine(cnn):
    from igaudit.transforms.attribution.engine import GradientEngine
    return GradientEngine(cnn, SHAPE, output="logits", score="probability", chunk_size=16)


@pytest.fixture(scope="session")
def batch():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(5,) + SHAPE).astype(np.float32)
    ids = [f"img-{i}" for i in range(5)]
    return x, ids
