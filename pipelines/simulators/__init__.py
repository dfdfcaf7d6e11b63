"""Event simulators: one source interface, synthetic generators per domain, a replay source, and sinks."""
