"""Change data capture of the shop's customers (SCD1, SCD2, revenue per tier)."""
