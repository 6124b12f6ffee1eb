-- 0009: what `callback_segments.tx_keys` holds since the trace writer keys only the exceptions.
-- No data changes: rows written before keep every key, which readers still use. Forward-only.
--
-- A first application (answered by the batch that wrote its transaction rows, not a duplicate)
-- is found by time: its segment's [first_at, last_at] holds the rows' `created_at` (the batch
-- began after the callback arrived and before it was answered). Only retries, refusals and
-- replays put their transaction ids' keys in `tx_keys`, so the GIN index takes an entry for a
-- few callbacks in a hundred instead of one for each (the rule is `rest::segments`).
COMMENT ON COLUMN callback_segments.tx_keys IS
    'keys (rest::segments::tx_key) of the transaction ids named by records that are not first applications; a first application is found by time (first_at <= created_at <= last_at)';
