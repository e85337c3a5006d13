-- Ranked search with collection statistics (BM25: how many memories hold a word, their
-- average length). SQLite's FTS5 index already keeps the totals it needs (its row count and
-- token counts per column) and counts a word's memories from its index, so nothing changes
-- in this schema; the version moves with PostgreSQL's, which has to keep its own totals, so
-- a schema version names one data model on both engines.
SELECT 1;
