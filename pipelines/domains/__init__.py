"""The business domains, one folder each: gold functions, simulator, demo summary."""
