"""Records a bronze query has not read that are gone from Kafka: found before the query starts, named in one line.

Where the bronze checkpoint's next micro-batch starts is compared with what the topic still holds, per partition:
- below the first offset the topic keeps: retention (or `kafka-delete-records`) removed records bronze never
  read. `lakepipe run --from-earliest-available` accepts that gap: the bronze query reads on from the first
  offset kept (Spark's `failOnDataLoss=false`, for that run's bronze query only), and the gap is recorded in the
  event log (`gap_accepted`) and printed;
- above the topic's last offset: the topic was deleted and created again, and its offsets started over. Bronze
  tells records apart by (topic, partition, offset), which the new topic reuses, so no flag makes that safe: the
  pipeline needs a topic of a new name (or its tables and checkpoints moved aside).
Spark itself would fail with a Java stack trace, or with `failOnDataLoss=false` skip silently. A lake not on
this machine (object storage, DBFS) is not checked before the start; Spark's own data-loss error is still
turned into the same one line (`data_loss_error`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.errors import LakepipeError
from pipelines.model.config import KafkaSettings
from pipelines.ops.status import committed_offsets, local_path
from pipelines.platform import kafka_admin


class OffsetsGoneError(LakepipeError):
    """Records the bronze query has not read are no longer in the topic."""


@dataclass(frozen=True)
class Gap:
    partition: int
    next_offset: int  # where the checkpoint's next micro-batch starts
    low: int  # the first offset the topic still keeps
    high: int  # the offset the topic's next record will get

    @property
    def recreated(self) -> bool:
        return self.high < self.next_offset

    @property
    def missing(self) -> int:
        return 0 if self.recreated else self.low - self.next_offset

    def phrase(self) -> str:
        if self.recreated:
            return (f"partition {self.partition}: the topic ends at offset {self.high:,}, below the {self.next_offset:,} "
                    "bronze has read (deleted and created again?)")  # fmt: skip
        return (f"partition {self.partition}: offsets {self.next_offset:,}-{self.low - 1:,} ({self.missing:,} records) "
                "expired before bronze read them")  # fmt: skip


def describe(found: list[Gap]) -> str:
    """The gaps as one phrase, partition by partition."""
    return "; ".join(g.phrase() for g in found)


def gaps(kafka: KafkaSettings, topic: str, checkpoint: str) -> list[Gap]:
    """The partitions of `topic` where records the query with `checkpoint` has not read are gone (none before its
    first micro-batch, or for a lake not on this machine)."""
    if local_path(checkpoint) is None:
        return []
    committed = (committed_offsets(checkpoint) or {}).get(topic)
    if not committed:
        return []
    out = []
    for part, (low, high) in sorted(kafka_admin.watermark_offsets(kafka, topic).items()):
        start = committed.get(part)
        if start is not None and (start < low or start > high):
            out.append(Gap(part, start, low, high))
    return out


def check(kafka: KafkaSettings, pipeline: str, topic: str, checkpoint: str, accept: bool) -> list[Gap]:
    """The gaps of the pipeline's bronze query that `accept` (--from-earliest-available) lets it read past; raise
    OffsetsGoneError naming them and the ways forward when there are gaps it does not accept."""
    found = gaps(kafka, topic, checkpoint)
    recreated = [g for g in found if g.recreated]
    if recreated:
        raise OffsetsGoneError(
            f"{pipeline}: topic '{topic}' starts over below what bronze has read: "
            f"{describe(recreated)}. Bronze tells records apart by (topic, partition, offset), "
            f"which the new topic reuses: give pipelines.{pipeline}.topic a new name (or move the pipeline's tables "
            "and checkpoints aside) and run again"
        )
    if found and not accept:
        raise OffsetsGoneError(
            f"{pipeline}: records bronze has not read are gone from topic '{topic}': "
            f"{describe(found)}. Either accept the gap: `lakepipe run {pipeline} "
            "--from-earliest-available` (recorded in the event log), or load those records from a copy of the topic "
            f"first: `lakepipe backfill {pipeline} --layer bronze ...`"
        )
    return found


def data_loss_error(pipeline: str, message: str) -> OffsetsGoneError | None:
    """Spark's own data-loss failure of a bronze query (records expired while it ran), as the same one line."""
    if "KAFKA_DATA_LOSS" not in message and "Some data may have been lost" not in message:
        return None
    return OffsetsGoneError(
        f"{pipeline}: records bronze had not read expired from Kafka while it ran ({message[:200]}); run again: the "
        f"start names the partitions and offsets, and `lakepipe run {pipeline} --from-earliest-available` accepts them"
    )
