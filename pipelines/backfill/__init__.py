"""Backfills: reprocess a range into a layer as a batch job, beside the running streams and never through
their checkpoints (`lakepipe backfill`, `jobs/backfill.py`).

- `bronze`: a Kafka range (offsets or timestamps) into bronze, exactly once by Kafka position;
- `gold`: an event-time range of a derived table recomputed from silver and replaced in one commit;
- `audit`: each backfill's id (its arguments, the code and contract it ran with, and its input's version)
  and its row in the `backfills` table.
"""
