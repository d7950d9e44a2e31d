import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """HSRNet's CPU-heavy tests run on one intra-op thread (fixture in tests/conftest.py)."""
    yield
