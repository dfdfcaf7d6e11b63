"""Gold: streaming aggregates, each a pure function from a watermarked silver stream to its rows."""
