-- 0008: callbacks as received and answered, for the back office's trace and replay, written
-- after the answer was sent by the gateway's trace writer, never in a settlement transaction:
-- losing a segment costs a diagnosis, not money. Forward-only.
--
-- One row per write batch, not per callback: `data` holds the batch's records framed and
-- LZ4-compressed (the format is `rest::segments`), and `tx_keys` the 64-bit keys of every
-- transaction id they name, so a transaction's callbacks are found through the GIN index
-- (`tx_keys @> ARRAY[key]`) and then picked out by their ids. Keeping raw callbacks so costs
-- a fraction of a row, one index entry and about a quarter of the bytes per callback.
CREATE TABLE callback_segments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    first_at    timestamptz NOT NULL,
    last_at     timestamptz NOT NULL,
    records     integer NOT NULL CHECK (records > 0),
    tx_keys     bigint[] NOT NULL,
    data        bytea NOT NULL
);
-- Already compressed: stored out of line as is, never compressed again.
ALTER TABLE callback_segments ALTER COLUMN data SET STORAGE EXTERNAL;
-- Keys go straight into the tree: a pending list would write each key twice (in the list, then
-- in the tree), and the writer's big sorted batches insert well without one.
CREATE INDEX callback_segments_tx ON callback_segments USING gin (tx_keys)
    WITH (fastupdate = off);
-- Retention prunes by time.
CREATE INDEX callback_segments_first_at ON callback_segments USING brin (first_at);
