"""The streaming engine: bronze, silver (parse, validate, deduplicate), gold writers, Delta I/O."""
