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
