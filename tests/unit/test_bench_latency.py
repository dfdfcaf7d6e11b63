"""The pure parts of the latency benchmark: when a micro-batch covers a table version, and percentiles."""

from __future__ import annotations

import pandas as pd

from pipelines.bench.latency import ready_times, summary


def test_a_version_is_ready_when_the_first_batch_reading_past_it_ends():
    # (batch end ms, end reservoirVersion, end index): index -1 means "version not started yet".
    ends = [(1000.0, 3, -1), (2500.0, 5, -1), (4000.0, 6, 0), (3000.0, 7, -1)]
    ready = ready_times(ends, [2, 3, 4, 5, 6, 7, 8])
    assert ready == {2: 1000.0, 3: 2500.0, 4: 2500.0, 5: 3000.0, 6: 3000.0}, (
        "version 3 is not covered by an offset (3, -1); the earliest covering end wins; 7 and 8 are not ready"
    )


def test_summary_reports_percentiles_and_what_was_not_ready():
    ms = pd.Series(range(1, 101), dtype=float)
    out = summary(ms, missing=4)
    assert out == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "records": 100, "not_ready": 4}
