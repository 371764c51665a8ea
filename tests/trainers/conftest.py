"""The trainer tests run on one torch thread (see tests/support/torch_threads.py)."""

from tests.support.torch_threads import one_torch_thread

__all__ = ["one_torch_thread"]
