"""Torch threads: one per free core (threads on busy cores made training 5.7-6.7x slower, docs/performance.md),
FTKIT_THREADS then OMP_NUM_THREADS override, and the CLI says which in one line."""
from __future__ import annotations

import pytest

from ftkit.env import torch_threads


@pytest.fixture
def no_thread_vars(monkeypatch):
    for var in ("FTKIT_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.mark.parametrize("cores, load, threads", [
    (2, 1.0, 1),    # the busy 2-core machine of the issue: one thread
    (2, 0.1, 2),    # idle: every core
    (2, 7.5, 1),    # overloaded: never fewer than one
    (16, 3.4, 13),  # the load rounds to whole cores
    (4, 0.0, 4),
])
def test_threads_follow_the_free_cores(no_thread_vars, cores, load, threads):
    n, why = torch_threads(cores=cores, load=load)
    assert n == threads
    assert why == f"{cores} cores, {cores - threads} busy; set FTKIT_THREADS to change"


def test_ftkit_threads_then_omp_num_threads_override(no_thread_vars):
    no_thread_vars.setenv("OMP_NUM_THREADS", "3")
    assert torch_threads(cores=2, load=1.0) == (3, "OMP_NUM_THREADS=3")
    no_thread_vars.setenv("FTKIT_THREADS", "5")
    assert torch_threads(cores=2, load=1.0) == (5, "FTKIT_THREADS=5")


def test_cli_sets_and_announces_the_threads(no_thread_vars, said):
    import torch

    from ftkit.cli import _torch_threads
    from ftkit.errors import FtkitError

    before = torch.get_num_threads()
    try:
        no_thread_vars.setenv("FTKIT_THREADS", "1")
        _torch_threads(to_stderr=False)
        assert torch.get_num_threads() == 1 and said[-1] == "torch threads: 1 (FTKIT_THREADS=1)"
        no_thread_vars.setenv("FTKIT_THREADS", "two")
        with pytest.raises(FtkitError, match=r"FTKIT_THREADS: FTKIT_THREADS='two' is not a number of threads\. "
                                             r"Fix: set FTKIT_THREADS to a whole number >= 1, or unset it"):
            _torch_threads(to_stderr=False)
    finally:
        torch.set_num_threads(before)
