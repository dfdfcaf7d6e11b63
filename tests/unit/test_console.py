"""What a `lakepipe` command shows on the console: a full disk as one line, the JVM's log in a file of its own."""

from __future__ import annotations

import os

from pipelines.errors import disk_full_message
from pipelines.model.config import load_settings
from pipelines.platform import session
from tests.unit.test_config import conf

SPARK_TEXT = """py4j.protocol.Py4JJavaError: An error occurred while calling o2522.save.
: org.apache.spark.SparkException: [TASK_WRITE_FAILED] Task failed while writing rows to file:{path}. SQLSTATE: 58030
Caused by: org.apache.hadoop.fs.FSError: java.io.IOException: No space left on device
	at org.apache.hadoop.fs.RawLocalFileSystem$LocalFSFileOutputStream.write(RawLocalFileSystem.java:320)"""


def test_a_full_disk_is_one_line_naming_what_was_written_and_the_room_left(tmp_path):
    table = tmp_path / "lake" / "tables" / "silver" / "events"  # not there: the room is that of the nearest folder
    line = disk_full_message(SPARK_TEXT.format(path=table))
    assert line is not None and "\n" not in line
    assert line.startswith(f"disk full: writing {table} failed (No space left on device; ")
    assert " MB free there now)" in line and "resumes from its checkpoints" in line


def test_other_errors_are_not_a_full_disk():
    assert disk_full_message(SPARK_TEXT.replace("No space left on device", "Permission denied").format(path="/x")) is None


def test_a_command_logs_to_a_new_file_under_the_project_and_keeps_the_last_twenty(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    settings = load_settings("e", conf(tmp_path / "conf", "{}"))
    monkeypatch.delenv(session.JVM_LOG_ENV, raising=False)
    assert session._new_log_file(settings, "lakepipe-run") is None  # --verbose, notebooks, tests: the console
    monkeypatch.setenv(session.JVM_LOG_ENV, "file")
    folder = tmp_path / ".lakepipe" / "logs"
    folder.mkdir(parents=True)
    for i in range(25):
        (folder / f"old-{i:02d}.log").write_text("x")
        os.utime(folder / f"old-{i:02d}.log", (1_000_000 + i, 1_000_000 + i))
    path = session._new_log_file(settings, "lakepipe-run")
    assert path.parent == folder and path.name.startswith("lakepipe-run-") and path.suffix == ".log"
    kept = sorted(f.name for f in folder.glob("*.log"))
    assert kept == [f"old-{i:02d}.log" for i in range(5, 25)]  # the 20 newest; the new one is made by the JVM
