"""CPU thread sizing: cores left after the loader workers, environment overrides, affinity."""

from __future__ import annotations

import os

import pytest
import torch

from tritemporal import threads
from tritemporal.threads import intra_op_threads, kept_threads, size_cpu_threads


@pytest.mark.parametrize(
    ("cores", "workers", "expected"), [(2, 1, 1), (2, 0, 2), (16, 4, 12), (2, 2, 1), (1, 8, 1)]
)
def test_cores_left_after_workers(cores: int, workers: int, expected: int) -> None:
    threads_, why = intra_op_threads(cores, workers, {})
    assert threads_ == expected
    assert why == f"{cores} available cores - {workers} loader worker(s)"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OMP_NUM_THREADS": "3"}, (3, "OMP_NUM_THREADS=3")),
        ({"MKL_NUM_THREADS": "5"}, (5, "MKL_NUM_THREADS=5")),
        ({"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "5"}, (3, "OMP_NUM_THREADS=3")),
        (
            {"TRITEMPORAL_NUM_THREADS": "2", "OMP_NUM_THREADS": "3"},
            (2, "TRITEMPORAL_NUM_THREADS=2"),
        ),
        ({"OMP_NUM_THREADS": " "}, (7, "8 available cores - 1 loader worker(s)")),  # blank: not set
    ],
)
def test_environment_overrides(env: dict[str, str], expected: tuple[int, str]) -> None:
    assert intra_op_threads(8, 1, env) == expected


@pytest.mark.parametrize("value", ["0", "-2", "four", "4,2"])
def test_unusable_override_warns_and_falls_through(value: str) -> None:
    with pytest.warns(UserWarning, match="OMP_NUM_THREADS"):
        got = intra_op_threads(8, 2, {"OMP_NUM_THREADS": value, "MKL_NUM_THREADS": "4"})
    assert got == (4, "MKL_NUM_THREADS=4")


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this OS")
def test_available_cores_follows_affinity_not_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert threads.available_cores() == 3


def test_cpu_runs_get_the_sized_count_and_restore_it(monkeypatch: pytest.MonkeyPatch) -> None:
    original = torch.get_num_threads()
    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    for name in threads.OVERRIDE_ENVS:
        monkeypatch.delenv(name, raising=False)
    torch.set_num_threads(1)
    try:
        with kept_threads():
            count = size_cpu_threads(torch.device("cpu"), workers=1)
            assert count == torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
        with kept_threads():  # GPU: torch's own count
            count = size_cpu_threads(torch.device("cuda"), workers=1)
            assert count == torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(original)


def test_busy_cores_leave_fewer_threads() -> None:
    assert intra_op_threads(2, 0, {}, busy=1) == (
        1,
        "2 available cores - 0 loader worker(s) - 1 busy with other processes",
    )
    assert intra_op_threads(2, 0, {}, busy=5)[0] == 1  # never below one
    assert intra_op_threads(8, 0, {"OMP_NUM_THREADS": "6"}, busy=7)[0] == 6  # an override wins


def test_busy_elsewhere_reads_procs_running_less_our_own(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3\nprocs_running 4\nprocs_blocked 0\n")
    monkeypatch.setattr(threads, "PROC_STAT", stat)
    monkeypatch.setattr(threads, "BUSY_INTERVAL_S", 0.0)
    monkeypatch.setattr(threads, "_own_running_threads", lambda: 1)
    assert threads.busy_elsewhere() == 3
    stat.write_text("cpu  1 2 3\n")  # no such line: unknown, so nothing is assumed busy
    assert threads.busy_elsewhere() == 0
    monkeypatch.setattr(threads, "PROC_STAT", tmp_path / "missing")
    assert threads.busy_elsewhere() == 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux /proc only")
def test_this_process_counts_its_reading_thread() -> None:
    assert threads._own_running_threads() >= 1


def test_phase_threads_size_blas_pools_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from threadpoolctl import threadpool_info

    for name in threads.OVERRIDE_ENVS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 1)
    with threads.phase_threads(torch.device("cpu")) as count:
        assert count == 1 and torch.get_num_threads() == 1
        blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert all(pool["num_threads"] == 1 for pool in blas)
