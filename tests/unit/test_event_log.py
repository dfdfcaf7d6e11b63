"""The event log's pure parts: a query's pipeline and layer from its name, Kafka lag from a progress report's offsets."""

from pipelines.ops.event_log import kafka_lag, query_labels


def test_query_labels():
    assert query_labels("clickstream.bronze") == ("clickstream", "bronze")
    assert query_labels("clickstream.silver") == ("clickstream", "silver")
    assert query_labels("clickstream.gold.clickstream_sessions") == ("clickstream", "gold")
    assert query_labels("customers.silver.customers") == ("customers", "silver")  # an SCD table with a query
    assert query_labels(None) == (None, "other") and query_labels("adhoc") == (None, "other")
    assert query_labels("bench.sink") == (None, "other")


def test_kafka_lag_sums_partitions_and_ignores_other_sources():
    end = '{"t":{"0":10,"1":5}}'
    assert kafka_lag(end, '{"t":{"0":12,"1":5}}') == 2
    assert kafka_lag(end, end) == 0
    assert kafka_lag('{"sourceVersion":1,"reservoirVersion":3}', '{"sourceVersion":1,"reservoirVersion":4}') is None
    assert kafka_lag(None, None) is None
