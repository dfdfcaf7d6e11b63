"""Gold aggregates on small static frames: windows, exact decimal revenue, exact distinct users."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from chispa import assert_df_equality

from pipelines.domains.clickstream.gold import activity_per_minute, revenue_per_minute

SILVER = "event_type string, event_time timestamp, user_id string, category string, currency string, price decimal(18,4), quantity long"


def t(minute, second=0):
    return dt.datetime(2026, 11, 22, 10, minute, second)


def events(spark):
    return spark.createDataFrame(
        [
            ("purchase", t(0, 5), "u1", "books", "EUR", Decimal("12.50"), 2),
            ("purchase", t(0, 59), "u2", "books", "EUR", Decimal("0.10"), 3),
            ("purchase", t(0, 30), "u2", "books", "USD", Decimal("7"), 1),
            ("purchase", t(1, 0), "u1", "books", "EUR", Decimal("1.0001"), 1),
            ("add_to_cart", t(0, 10), "u3", "books", "EUR", Decimal("99"), 1),
            ("page_view", t(0, 20), "u1", None, None, None, None),
        ],
        SILVER,
    )


def test_revenue_is_exact_per_minute_category_and_currency(spark):
    out = revenue_per_minute(events(spark))
    expected = spark.createDataFrame(
        [
            (t(0), t(1), "books", "EUR", 2, 5, Decimal("25.3000")),
            (t(0), t(1), "books", "USD", 1, 1, Decimal("7.0000")),
            (t(1), t(2), "books", "EUR", 1, 1, Decimal("1.0001")),
        ],
        "window_start timestamp, window_end timestamp, category string, currency string, orders long, units long, revenue decimal(38,4)",
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_activity_counts_events_and_distinct_users(spark):
    out = activity_per_minute(events(spark))
    expected = spark.createDataFrame(
        [
            (t(0), t(1), "purchase", 3, 2),
            (t(1), t(2), "purchase", 1, 1),
            (t(0), t(1), "add_to_cart", 1, 1),
            (t(0), t(1), "page_view", 1, 1),
        ],
        "window_start timestamp, window_end timestamp, event_type string, events long, users long",
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)
