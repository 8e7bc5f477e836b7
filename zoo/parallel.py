"""Work spread over processes, one PyTorch thread each: how zoo book, zoo sweep and chapter analyses use
the cores. Small models use one core far better than two (no fork/join barrier per operation), so C
one-thread processes side by side finish C times sooner than one process after another."""

from __future__ import annotations

import os


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs since boot, from Linux's /proc/stat; None where it cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError):
        return None
    if len(fields) < 5:
        return None
    return fields[3] + fields[4], sum(fields)


def busy_cores(interval: float = 0.2) -> float | None:
    """How many cores other processes keep busy now: the non-idle share of all CPU time over ``interval``
    seconds, times the number of cores (this process sleeps meanwhile, so it counts only the others). Unlike
    the load average, which lags by a minute, it does not count a run that has just ended. None where the
    CPU times cannot be read (not Linux)."""
    import time

    before = cpu_times()
    if before is None:
        return None
    time.sleep(interval)
    after = cpu_times()
    idle, total = after[0] - before[0], after[1] - before[1]
    return (1 - idle / total) * (os.cpu_count() or 1) if total > 0 else 0.0


def free_threads(interval: float = 0.2) -> int | None:
    """Torch threads for a run that did not ask for a number: one per usable core that no other process keeps
    busy, and at least one; None (keep torch's default) where the load cannot be read.

    Measured on the 2-core development machine (benchmarks/threads_default.py; ``zoo train gpt --preset
    nanogpt-cpu``, tokens/s): quiet, 2 threads 24.2k and 1 thread 16.4k; beside one busy process, 2 threads
    6.7k and 1 thread 15.8k; this rule chose 2 and 1 (24.6k, 16.5k). Each op of a small model ends at a
    barrier that waits for its slowest thread, and a thread that shares its core with another process is
    slow, so a thread per busy core is a loss, not a gain.
    """
    busy = busy_cores(interval)
    if busy is None:
        return None
    cores = usable_cores()
    return max(1, min(cores, int(cores - busy + 0.5)))


def worker_init(threads: int) -> None:
    import torch

    from zoo.quiet import quiet_libraries

    torch.set_num_threads(threads)
    quiet_libraries()  # a fresh (spawned) process: keep Lightning's banners out of the output


def map_in_processes(fn, calls: list[tuple], jobs: int, threads: int = 1) -> list:
    """[fn(*args) for args in calls], computed by ``jobs`` processes with ``threads`` torch threads each, in
    the order given (put the longest first); the results come back in that order. ``fn`` must be importable
    by name: the processes are spawned, not forked, since a forked child inherits the parent's torch thread
    pool and Lightning state."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=worker_init, initargs=(threads,)) as pool:
        futures = [pool.submit(fn, *args) for args in calls]
        return [f.result() for f in futures]
