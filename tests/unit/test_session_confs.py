"""Settings given to a session for a block (`session_confs`): set, then each restored; a setting the session
refuses fails a strict block, and is named and skipped in a lenient one (a pipeline spec's `spark_conf`)."""

from __future__ import annotations

import logging

import pytest

from pipelines.platform.session import session_confs

SHUFFLE = "spark.sql.shuffle.partitions"
STATIC = "spark.sql.extensions"  # a static setting: a running session refuses to change it


def test_settings_hold_for_the_block_then_are_restored(spark):
    before = spark.conf.get(SHUFFLE)
    assert spark.conf.get("spark.sql.lakepipe.test.unset", None) is None
    with session_confs(spark, {SHUFFLE: "7", "spark.sql.lakepipe.test.unset": "x"}):
        assert spark.conf.get(SHUFFLE) == "7"
        assert spark.conf.get("spark.sql.lakepipe.test.unset") == "x"
    assert spark.conf.get(SHUFFLE) == before
    assert spark.conf.get("spark.sql.lakepipe.test.unset", None) is None


def test_a_refused_setting_fails_a_strict_block(spark):
    before = spark.conf.get(SHUFFLE)
    with pytest.raises(Exception, match=STATIC), session_confs(spark, {SHUFFLE: "7", STATIC: "x.Y"}):
        pass
    assert spark.conf.get(SHUFFLE) == before, "what was set before the refusal is restored"


def test_a_refused_setting_is_named_and_skipped_when_not_strict(spark, caplog):
    before = spark.conf.get(SHUFFLE)
    with caplog.at_level(logging.WARNING, logger="lakepipe.session"), \
            session_confs(spark, {STATIC: "x.Y", SHUFFLE: "7"}, strict=False):  # fmt: skip
        assert spark.conf.get(SHUFFLE) == "7"
    assert spark.conf.get(SHUFFLE) == before
    assert f"Spark setting {STATIC}=x.Y was refused here" in caplog.text
