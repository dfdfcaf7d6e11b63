"""Whether a pipeline is running, and since when: a small file a run writes beside its checkpoints.

`lakepipe run` (any caller of the runner) writes `<checkpoints>/<pipeline>/_running.json` (host, pid, start time,
Spark application id) before its queries start and deletes it when it ends, however it ends short of a kill.
`lakepipe status` reads it without Spark: running when the process is alive on this host; a file whose process
is gone is a run that was killed (it says so); a file from another host is reported as that host's run. It only
reports: it does not keep a second run from starting (that lock is another issue's).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipelines.platform.processes import alive

FILE = "_running.json"


@dataclass(frozen=True)
class RunState:
    running: bool
    since_ms: float | None = None  # when the run started
    pid: int | None = None
    host: str | None = None
    note: str = ""  # e.g. "killed": a marker whose process is gone

    def phrase(self, now_ms: float) -> str:
        if self.since_ms is None:
            return "not running"
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since_ms / 1000))
        if self.running:
            where = "" if self.host == socket.gethostname() else f" on {self.host}"
            return f"running{where} since {started} (pid {self.pid})"
        return f"not running (the run started {started} ended without stopping: killed?)"


def marker_path(checkpoints: str) -> Path | None:
    """The marker file of a pipeline's checkpoint folder, or None for a lake not on this machine."""
    if "://" in checkpoints or checkpoints.startswith("dbfs:"):
        return None
    return Path(checkpoints.removeprefix("file:")) / FILE


@contextmanager
def marked(checkpoints: list[str], app_id: str) -> Iterator[None]:
    """Mark the pipelines with these checkpoint folders as running for the length of the block."""
    paths = [p for p in (marker_path(c) for c in checkpoints) if p is not None]
    body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started_ms": time.time() * 1000, "app_id": app_id})
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(body)
    try:
        yield
    finally:
        for p in paths:
            p.unlink(missing_ok=True)


def _python_alive(pid: int) -> bool:
    """Alive, and still a Python process (a reused pid is not the run)."""
    try:
        return alive(pid) and b"python" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return alive(pid)


def run_state(checkpoints: str) -> RunState:
    path = marker_path(checkpoints)
    if path is None or not path.is_file():
        return RunState(False)
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        return RunState(False)
    here = m.get("host") == socket.gethostname()
    running = _python_alive(int(m["pid"])) if here else True
    return RunState(running, float(m["started_ms"]), int(m["pid"]), m.get("host"), "" if running else "killed")
