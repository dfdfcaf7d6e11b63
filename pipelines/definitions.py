"""What each pipeline is made of: its events, contract and gold outputs (declarations only)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import DataFrame

from pipelines.config import StreamingSettings
from pipelines.errors import ConfigError
from pipelines.gold import clickstream


@dataclass(frozen=True)
class GoldOutput:
    """A gold table: built from the watermarked silver stream, upserted by `keys`."""

    name: str
    build: Callable[[DataFrame, StreamingSettings], DataFrame]
    keys: tuple[str, ...]
    delete_flag: str | None = None  # rows with this column true delete their key (retractions)


@dataclass(frozen=True)
class PipelineDefinition:
    name: str
    events: str  # the silver table's name; bronze and quarantine are named after it
    gold: tuple[GoldOutput, ...]


CLICKSTREAM = PipelineDefinition(
    name="clickstream",
    events="clickstream_events",
    gold=(
        GoldOutput(
            "clickstream_revenue_per_minute",
            lambda events, _: clickstream.revenue_per_minute(events),
            ("window_start", "category", "currency"),
        ),
        GoldOutput(
            "clickstream_activity_per_minute",
            lambda events, _: clickstream.activity_per_minute(events),
            ("window_start", "event_type"),
        ),
        GoldOutput(
            "clickstream_sessions",
            lambda events, streaming: clickstream.sessions(events, streaming.session_gap),
            ("session_id", "session_start"),
            delete_flag="retracted",
        ),
    ),
)

DEFINITIONS = {d.name: d for d in (CLICKSTREAM,)}


def definition(name: str) -> PipelineDefinition:
    try:
        return DEFINITIONS[name]
    except KeyError:
        raise ConfigError(f"unknown pipeline '{name}' (known: {', '.join(sorted(DEFINITIONS))})") from None
