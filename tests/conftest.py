"""Fixtures and settings shared by the unit tests (the repository's conftest.py sets fast mode)."""
import pytest
from hypothesis import HealthCheck, settings

# Property-based tests stay fast and repeatable: few examples, no deadline (the first example
# pays for imports and filters), no example database written into the working tree.
settings.register_profile("ekg", max_examples=8, deadline=None, database=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile("ekg")


@pytest.fixture(scope="session")
def model():
    """The recommended model (signal_cnn, next RR seen up to 0.7 s), as the notebooks load it."""
    from ekg.models import load_model, model_path

    return load_model(model_path("recommended"))


@pytest.fixture(scope="session")
def rec100():
    """The first 3 minutes of record 100, channel 0, in mV."""
    from ekg.data import find_data_dir
    from ekg.signals import read_signal

    return read_signal(find_data_dir() / "100")[0][: 360 * 180]


@pytest.fixture(scope="session")
def rules_model():
    """A stand-in model for tests of the Monitor's rules fed beats directly: it has the metadata a
    Monitor reads when it starts and no weights, so those tests need no trained model."""
    from types import SimpleNamespace

    return SimpleNamespace(meta={"fs": 360, "classes": ["N", "S", "V", "F", "Q"], "input": {"kind": "signal"}})
