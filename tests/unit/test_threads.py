"""The run's thread setting (pytest_mlpval.threads): the default for a shared box, set
and restored, torch only when already imported."""

from __future__ import annotations

import os
import sys
import types

from pytest_mlpval import threads


def test_default_threads_leave_busy_cores_alone(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert threads.default_threads() == 8
    assert threads.default_threads(processes=2) == 4
    assert threads.default_threads(parallel=True) == 1  # xdist or campaign workers
    monkeypatch.setattr(os, "getloadavg", lambda: (5.4, 0.0, 0.0))
    assert threads.free_cores() == (3, 8, 5.4)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    assert threads.default_threads() == 1  # a busy 2-core box: one thread


def test_set_threads_is_undone_and_touches_torch_only_when_imported(monkeypatch):
    names = (*threads.THREAD_VARIABLES, threads.THREADS_ENV)
    before = {name: os.environ.get(name) for name in names}
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    threads.set_threads(2)
    try:
        assert {os.environ[name] for name in names} == {"2"}
        assert threads.configured_threads() == 2
        assert "torch" not in sys.modules  # never imported for it
        torch = types.SimpleNamespace(threads=8)
        torch.get_num_threads = lambda: torch.threads
        torch.set_num_threads = lambda n: setattr(torch, "threads", n)
        monkeypatch.setitem(sys.modules, "torch", torch)  # a torch model was loaded
        threads.limit_loaded()
        assert torch.threads == 2
    finally:
        threads.restore_threads()
    assert {name: os.environ.get(name) for name in names} == before


def test_set_threads_nests():
    """A run inside a run (pytester in-process) gets back the outer run's setting."""
    outer = os.environ.get(threads.THREADS_ENV)
    threads.set_threads(3)
    try:
        threads.set_threads(1)
        assert threads.configured_threads() == 1
        threads.restore_threads()
        assert threads.configured_threads() == 3
    finally:
        threads.restore_threads()
    assert os.environ.get(threads.THREADS_ENV) == outer
