"""E1c's measure: the driver JVM's CPU time per record sent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from pipelines.bench.cpu import (
    OTHER,
    THREAD_GROUPS,
    children_cpu,
    cpu_seconds,
    per_record_us,
    processes,
    thread_cpu,
    thread_groups,
)
from pipelines.errors import LakepipeError


def test_cpu_per_record_is_microseconds_of_the_measured_cpu_over_the_records_sent():
    assert per_record_us(45.0, 150_000) == pytest.approx(300.0)
    assert per_record_us(9.0, 450_000) == pytest.approx(20.0)


def test_a_window_without_records_is_an_error_not_a_figure():
    with pytest.raises(LakepipeError, match="no records"):
        per_record_us(3.0, 0)


def test_the_driver_jvm_cpu_time_grows_with_the_work_it_runs(spark):
    before = cpu_seconds(spark)
    spark.range(2_000_000).selectExpr("id % 13 AS k", "sha2(cast(id AS string), 256) AS h").groupBy("k").count().collect()
    after = cpu_seconds(spark)
    assert before > 0
    assert after - before > 0.05  # two million SHA-256 hashes take well over 50 ms of CPU


def test_thread_cpu_is_split_by_what_the_threads_do_and_the_rest_is_other():
    before = {"1": ("Executor task l", 10.0), "2": ("C2 CompilerThre", 4.0), "3": ("GC Thread#0", 1.0), "4": ("main", 3.0)}
    after = {
        "1": ("Executor task l", 13.5),  # +3.5
        "2": ("C2 CompilerThre", 5.0),  # +1.0
        "3": ("GC Thread#0", 1.5),  # +0.5
        "4": ("main", 4.0),  # +1.0, of no group
        "5": ("Executor task i", 0.5),  # started in the window: all of it
        "6": ("stream executio", 2.0),
    }
    groups = thread_groups(before, after, total_s=10.0)
    assert groups["tasks"] == 4.0
    assert groups["JIT compiler"] == 1.0
    assert groups["garbage collector"] == 0.5
    assert groups["query threads (planning, state, commits)"] == 2.0
    assert groups["calls from Python (foreachBatch)"] == 0.0
    assert groups[OTHER] == 2.5  # 10 - 7.5: `main`, and threads that ended in the window
    assert list(groups)[:-1] == [g for g, _ in THREAD_GROUPS]


def test_other_is_never_negative_when_the_process_total_was_read_first():
    assert thread_groups({}, {"1": ("Executor task l", 2.04)}, total_s=2.0)[OTHER] == 0.0


def test_a_busy_thread_of_this_process_shows_in_its_thread_cpu():
    burnt, release, ids = threading.Event(), threading.Event(), []

    def burn() -> None:
        ids.append(str(threading.get_native_id()))
        start = time.thread_time()
        while time.thread_time() - start < 0.3:
            pass
        burnt.set()
        release.wait(30)

    before = thread_cpu(os.getpid())
    worker = threading.Thread(target=burn)
    worker.start()
    try:
        assert burnt.wait(30)
        after = thread_cpu(os.getpid())
    finally:
        release.set()
        worker.join()
    assert all(isinstance(name, str) and seconds >= 0 for name, seconds in after.values())
    assert ids[0] not in before
    assert after[ids[0]][1] >= 0.25  # its own CPU, from its own /proc entry
    assert after[ids[0]][1] < 5


def test_the_cpu_of_workers_forked_by_a_child_is_counted_once_they_ended():
    burner = (
        "import os, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    start = time.process_time()\n"
        "    while time.process_time() - start < 0.4:\n"
        "        pass\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print('reaped', flush=True)\n"
        "time.sleep(60)\n"
    )  # a daemon that forks a worker and waits for it, as PySpark's does
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {burner!r}])"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert parent.stdout.readline().strip() == "reaped"
        assert children_cpu(parent.pid) >= 0.35
    finally:
        for child in [*processes()[1].get(parent.pid, []), parent.pid]:
            os.kill(child, signal.SIGKILL)
        parent.wait()

