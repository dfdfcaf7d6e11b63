"""Operations on the lakehouse: the table catalog, quarantine replay, compaction."""
