import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread for these CPU-heavy tests (two oversubscribe the shared CI cores), restored after."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
