"""Two runs of one pipeline on one lake: the second refuses at start, naming the first; a killed run's lock is
released by the operating system, so the next run takes it over (issue 14)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from pipelines.errors import RunLockedError
from pipelines.ops.run_marker import marked, run_state
from tests.conftest import PROJECT_DIR, write_conf
from tests.integration.test_cli_errors import lakepipe, one_line_error

HOLD = """
import sys, time
from pipelines.ops.run_marker import marked
from pipelines.errors import RunLockedError
try:
    with marked(sys.argv[1:], "app-holder"):
        print("held", time.time(), flush=True)
        time.sleep(float({hold}))
        print("until", time.time(), flush=True)
except RunLockedError as e:
    print("refused:", e, flush=True)
"""


def holder(checkpoints: list[str], hold: float = 600) -> subprocess.Popen:
    code = textwrap.dedent(HOLD).format(hold=hold)
    return subprocess.Popen([sys.executable, "-c", code, *checkpoints], cwd=PROJECT_DIR, stdout=subprocess.PIPE, text=True)


def test_a_second_run_refuses_naming_the_first_and_a_killed_run_leaves_no_lock(tmp_path):
    conf = write_conf(tmp_path / "conf", "test.never.created")
    checkpoints = str(tmp_path / "conf" / "lake" / "checkpoints" / "clickstream")
    first = holder([checkpoints])
    try:
        assert first.stdout.readline().startswith("held ")
        with pytest.raises(RunLockedError, match=rf"pipeline 'clickstream' is already running since .* \(pid {first.pid}\), "
                                                 r"Spark application app-holder: a second run .* `kill \d+`"):  # fmt: skip
            with marked([checkpoints], "app-second"):
                pytest.fail("the second run got the lock")
        assert run_state(checkpoints).pid == first.pid, "the refused run left the holder's file alone"

        # The command line: one line, exit 2, before any query (the topic does not even exist).
        line = one_line_error(lakepipe("run", "clickstream", "--once", "--env", "test", "--conf-dir", str(conf), timeout=180),
                              "is already running since", f"(pid {first.pid})", "stop that run first")  # fmt: skip
        assert "topic" not in line
    finally:
        os.kill(first.pid, signal.SIGKILL)  # a crash: no `finally` of the holder runs
        first.wait()
    assert not run_state(checkpoints).running and run_state(checkpoints).note == "killed"
    with marked([checkpoints], "app-next"):  # the OS released the lock with the process
        assert run_state(checkpoints).pid == os.getpid()
    assert run_state(checkpoints).since_ms is None, "the file goes when a run ends"


def test_of_runs_started_at_once_exactly_one_gets_the_lock(tmp_path):
    checkpoints = [str(tmp_path / "checkpoints" / "clickstream"), str(tmp_path / "checkpoints" / "payments")]
    runs = [holder(checkpoints, hold=3) for _ in range(8)]
    outcomes = [r.communicate(timeout=60)[0] for r in runs]
    held = sorted((float(o.split()[1]), float(o.split()[3])) for o in outcomes if o.startswith("held "))
    refused = [o for o in outcomes if o.startswith("refused: ")]
    assert held and len(held) + len(refused) == 8, outcomes
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(held, held[1:])), f"two held the lock at once: {held}"
    assert all("already running since" in o or "being started by another run" in o for o in refused), refused
