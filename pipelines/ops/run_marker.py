"""One run per pipeline at a time, and since when it runs: a small file a run holds beside its checkpoints.

`lakepipe run` (any caller of the runner) takes `<checkpoints>/<pipeline>/_running.json` before its queries start:
an exclusive `flock` on it for the whole run, and in it the host, pid, start time and Spark application id. A
second run of the same pipeline on the same lake refuses at start with one line naming the first
(`RunLockedError`) instead of racing it through one checkpoint. The operating system releases the lock when its
process ends, however it ends, so a SIGKILLed run leaves no stale lock: the next run takes it over. The file is
deleted when a run ends short of a kill.

`lakepipe status` reads the file without Spark: running when the process is alive on this host; a file whose
process is gone is a run that was killed (it says so); a file from another host is reported as that host's run.
A lake on object storage or DBFS has no such file (its platform runs one job at a time).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import RunLockedError
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
    """Hold the run lock of the pipelines with these checkpoint folders for the length of the block (or raise
    RunLockedError naming the run that holds one of them, taking none)."""
    paths = [p for p in (marker_path(c) for c in checkpoints) if p is not None]
    body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started_ms": time.time() * 1000, "app_id": app_id})
    held: list[tuple[Path, int]] = []
    try:
        for p in paths:
            held.append((p, _lock(p)))
        for p, fd in held:
            os.ftruncate(fd, 0)
            os.pwrite(fd, body.encode(), 0)
        yield
    finally:
        for p, fd in reversed(held):
            p.unlink(missing_ok=True)  # before the lock goes: a run that opens the file now finds a new one
            os.close(fd)


def ensure_free(checkpoints: list[str]) -> None:
    """RunLockedError if another run holds one of these pipelines now (a check before Spark starts; `marked`
    takes the lock itself)."""
    for p in (marker_path(c) for c in checkpoints):
        if p is not None and p.is_file():
            os.close(_lock(p))


def _lock(path: Path) -> int:
    """An open descriptor of `path` holding its exclusive lock, or RunLockedError naming the holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(_held_by(path)) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False  # its holder ended between our open and our lock: that file is gone, take the new one
        if same:
            return fd
        os.close(fd)


def _held_by(path: Path) -> str:
    pipeline = path.parent.name
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        m = {}
    if not m:
        return f"pipeline '{pipeline}' is being started by another run (lock {path}): let it start, or stop it first"
    state = RunState(True, float(m["started_ms"]), int(m["pid"]), m.get("host"))
    return (
        f"pipeline '{pipeline}' is already {state.phrase(0)}, Spark application {m.get('app_id')}: a second run on "
        f"its checkpoints would race it; stop that run first (Ctrl-C, or `kill {m['pid']}`), or wait for it to end"
    )


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
