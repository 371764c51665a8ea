"""One torch thread for tests that train in-process (a fixture; conftests import it).

Module scope, so module-scoped fixtures see it too: CPU runs are bit-for-bit reproducible for
a given thread count. The models are tiny, and on a shared 2-core machine OpenMP threads spin
against each other (a 0.3 s run took 20 s under load with 2 threads).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
