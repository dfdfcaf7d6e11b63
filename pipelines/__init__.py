"""lakepipe: Kafka to Delta Lake medallion pipelines on Spark Structured Streaming.

Importing this package has no side effects: no Spark session, no file access.
"""

__version__ = "0.1.0"
