import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    # Tests share two cores with other work: one thread avoids oversubscription, and float results that
    # must repeat bit for bit depend on the thread count.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
