"""The pinning of the onboarding benchmark's second configuration (``bench/affinity.py``): every
thread of the platform's processes on CPU 0 and of this process on CPU 1 while it lasts, each put
back to its own earlier set afterwards, a thread started meanwhile to its process's."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from bench import affinity


@pytest.fixture
def two_cpus() -> None:
    why = affinity.unavailable()
    if why is not None:
        pytest.skip(why)


@pytest.mark.usefixtures("two_cpus")
def test_pinned_puts_every_thread_on_its_cpu_and_restores_them() -> None:
    # A child with threads of its own, as the Go services have (python: a few threads asleep).
    code = (
        "import threading, time\n"
        "[threading.Thread(target=time.sleep, args=(60,)).start() for _ in range(3)]\n"
        "time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while len(affinity.threads(child.pid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        before_child = os.sched_getaffinity(child.pid)
        before_self = os.sched_getaffinity(0)
        late: list[set[int]] = []
        with affinity.pinned([child.pid]) as pinning:
            assert pinning.on(child.pid, affinity.PLATFORM_CPU)
            assert pinning.on(os.getpid(), affinity.CLIENT_CPU)
            assert pinning.pinned[affinity.PLATFORM_CPU] >= 4
            started = threading.Event()
            stop = threading.Event()

            def worker() -> None:
                started.set()
                stop.wait()
                late.append(os.sched_getaffinity(0))

            thread = threading.Thread(target=worker)
            thread.start()  # started while pinned: inherits CPU 1
            started.wait()
        stop.set()
        thread.join()
        assert all(os.sched_getaffinity(t) == before_child for t in affinity.threads(child.pid))
        assert all(os.sched_getaffinity(t) == before_self for t in affinity.threads(os.getpid()))
        assert late == [before_self]  # the thread started meanwhile was put back too
    finally:
        child.kill()
        child.wait()


@pytest.mark.usefixtures("two_cpus")
def test_a_process_that_is_gone_is_skipped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    before = os.sched_getaffinity(0)
    with affinity.pinned([child.pid]) as pinning:
        assert pinning.pinned.get(affinity.PLATFORM_CPU, 0) == 0
        assert os.sched_getaffinity(0) == {affinity.CLIENT_CPU}
    assert os.sched_getaffinity(0) == before
