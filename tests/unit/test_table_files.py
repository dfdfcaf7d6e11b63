"""Which of a table's data files a dedup lookup reads (`overlapping`) and how many rows they hold (`rows_of`): pure,
on listed files."""

from __future__ import annotations

import datetime as dt

from pipelines.engine.table_files import DataFile, overlapping, rows_of

H = 3600
T0 = int(dt.datetime(2026, 11, 22, 9, tzinfo=dt.UTC).timestamp())  # 09:00


def at(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def file(name: str, low: int | None, high: int | None, nulls: int | None = 0, date: str | None = "2026-11-22") -> DataFile:
    return DataFile(name, date, at(low) if low is not None else None, at(high) if high is not None else None, nulls)


def names(files: list[DataFile]) -> list[str]:
    return [f.path for f in files]


def test_a_file_is_read_when_its_event_times_meet_a_range():
    files = [
        file("before", T0 - 2 * H, T0 - 1),  # up to 08:59:59
        file("inside", T0 + 60, T0 + 120),
        file("across", T0 - H, T0 + 3 * H),
        file("at_end", T0 + H, T0 + 2 * H),  # starts where the range [09:00, 10:00) ends
        file("after", T0 + H + 1, T0 + 2 * H),
        file("long_before", T0 - 5 * H, T0 - 2 * H),
    ]
    assert names(overlapping(files, [(T0, T0 + H)], False)) == ["inside", "across"]
    later = overlapping(files, [(T0 - 3 * H, T0 - 2 * H), (T0 + H, T0 + 2 * H)], False)  # 06:00-07:00, 10:00-11:00
    assert names(later) == ["across", "at_end", "after", "long_before"]  # ("before" begins at 07:00)


def test_the_last_millisecond_of_a_file_is_never_cut_off():
    # Delta keeps 08:59:59.999 as the greatest event time of a file whose last row is 08:59:59.999500
    edge = DataFile("edge", "2026-11-22", at(T0 - 60), at(T0) - dt.timedelta(milliseconds=1), 0)
    assert names(overlapping([edge], [(T0, T0 + H)], False)) == ["edge"]


def test_a_file_without_statistics_is_read_unless_its_day_is_outside_every_range():
    files = [file("same_day", None, None, None), file("other_day", None, None, None, date="2026-10-01"),
             file("unpartitioned", None, None, None, date=None)]  # fmt: skip
    assert names(overlapping(files, [(T0, T0 + H)], False)) == ["same_day", "unpartitioned"]


def test_rows_without_an_event_time_are_looked_up_only_when_the_batch_has_some():
    files = [file("nulls_only", None, None, nulls=5, date=None), file("some_nulls", T0 - 9 * H, T0 - 8 * H, nulls=1),
             file("no_nulls", T0 - 9 * H, T0 - 8 * H, nulls=0)]  # fmt: skip
    assert names(overlapping(files, [(T0, T0 + H)], False)) == []
    assert names(overlapping(files, [(T0, T0 + H)], True)) == ["nulls_only", "some_nulls"]


def test_the_rows_of_files_are_their_statistics_row_counts_unless_one_has_none():
    counted = [file("a", T0, T0 + 60)._replace(rows=3), file("b", T0, T0 + 60)._replace(rows=4)]
    assert rows_of(counted) == 7 and rows_of([]) == 0
    assert rows_of([*counted, file("no_count", T0, T0 + 60)]) is None, "a file whose statistics do not count its rows"
