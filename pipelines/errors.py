"""Specific errors. Each message says what is wrong and how to fix it, on one line."""

from __future__ import annotations

import re


class LakepipeError(Exception):
    """Base class: the CLI prints the message alone, without a traceback, and exits 2."""


class ConfigError(LakepipeError):
    """A configuration or contract file is invalid (unknown key, wrong type, missing value)."""


class JavaNotFoundError(LakepipeError):
    """No `java` executable could be found."""


class JarsMissingError(LakepipeError):
    """The Maven-resolved jar folder is missing or empty."""


class BrokerError(LakepipeError):
    """The local Kafka broker cannot be started, stopped or reached."""


class PortInUseError(BrokerError):
    """A port the local broker needs is held by another program."""


class MetastoreError(LakepipeError):
    """The local catalog's metastore server cannot be started, or does not answer."""


class ClusterError(LakepipeError):
    """The local Spark standalone cluster cannot be started, or a job cannot be submitted to it."""


class KafkaUnreachableError(LakepipeError):
    """The configured Kafka bootstrap servers do not answer."""


class KafkaAuthError(KafkaUnreachableError):
    """The broker answers but refuses the client: SASL credentials or TLS trust."""


class ChangeRefusedError(LakepipeError):
    """A spec or contract change the existing tables or checkpoints cannot take as they are (`lakepipe plan`)."""


class CheckpointDamagedError(LakepipeError):
    """A checkpoint file a restart needs cannot be read (`pipelines.ops.checkpoints`)."""


class DiskFullError(LakepipeError):
    """A write failed for want of room on the disk (`disk_full_message`)."""


class TopicMissingError(LakepipeError):
    """A pipeline's topic does not exist on the broker."""


class PipelineFailedError(LakepipeError):
    """A streaming query of a pipeline failed; the message names the query."""


class RunLockedError(LakepipeError):
    """Another run of the same pipeline holds its checkpoints; the message names it."""


class TableNotFoundError(LakepipeError):
    """A table name that lakepipe does not know, or that has not been written yet."""


class QualityFailedError(LakepipeError):
    """A data-quality rule with action `fail` was broken; the message names it and shows offending rows."""


class ConcurrentSilverWriteError(LakepipeError):
    """Another writer (a silver backfill) committed rows of a micro-batch's keys after the batch's dedup lookup read
    silver: the batch is not appended, and its re-run (the query restarted) is classified against those rows."""


def error_summary(text: str) -> str:
    """One line for a query's error: a Python worker's own exception line if there is one, else the first."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    python_errors = [ln for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", ln)]
    line = python_errors[-1] if python_errors else (lines[0] if lines else "unknown error")
    return re.sub(r"\s*SQLSTATE: \w+", "", line)[:500]


DISK_FULL = "No space left on device"


def disk_full_message(text: str) -> str | None:
    """One line for an error whose cause is a full disk (anywhere in Spark's or Python's text), else None: what was
    being written, how much room is left there, and that the run resumes once there is room."""
    if DISK_FULL not in text:
        return None
    import shutil
    from pathlib import Path

    found = re.search(r"file:(/[^\s,;'\"]+)", text)  # Spark names the table or file it was writing
    where, room = "a file", ""
    if found:
        where = found.group(1).rstrip(".")
        folder = Path(where)
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        room = f"; {shutil.disk_usage(folder).free / 2**20:,.0f} MB free there now"
    return (f"disk full: writing {where} failed ({DISK_FULL}{room}). Free space (or move lake.root), then run again: "
            "a failed micro-batch leaves no Delta commit, and the run resumes from its checkpoints")
