-- 0012: the report job's watermark also keeps the newest creation time it has folded, so a
-- fold counts a round opened after that time without searching the ledger for its earlier
-- bets (there can be none: a round's rows are never older than its `rounds` row).
-- Forward-only.
ALTER TABLE report_watermark ADD COLUMN last_at timestamptz;
-- Every folded row's time is at most this (the fold keeps it so from now on).
UPDATE report_watermark
SET last_at = (SELECT max(created_at) FROM transactions WHERE id <= last_id);
