-- 0011: the ledger and the kept callbacks partitioned by day, so years of them stay cheap to
-- keep and old days leave by dropping a partition (`gateway prune`), never by DELETE.
-- Forward-only.
--
-- Daily partitions are created ahead by the gateway (settlement::partitions, at start and every
-- hour); existing rows become one partition, `*_initial`, covering everything before tomorrow
-- (UTC), pruned whole once all of it is older than the retention (an empty table is dropped
-- instead, so a new database has daily partitions only).

-- 1. The idempotency judge leaves the ledger. A partitioned table's unique keys must hold the
-- partition key, so UNIQUE (provider_id, provider_tx_id) on the ledger could only say "unique
-- per day": a retry of last month's transaction would be applied again. This unpartitioned
-- table is the judge instead: one narrow row per provider transaction, written in the batch's
-- transaction with its ledger row, pointing at it by (id, created_at) so the row is fetched
-- from its one partition. Rollbacks also carry the id they reverse: a rollback that came before
-- its transaction (a tombstone) is found here without searching every partition.
CREATE TABLE transaction_keys (
    provider_id      integer NOT NULL,
    provider_tx_id   text NOT NULL,
    id               bigint NOT NULL,
    created_at       timestamptz NOT NULL,
    -- The distribution column on Citus (docs/scale-out.md), like every money table's.
    player_id        bigint NOT NULL,
    -- Rollbacks only: the provider transaction id they reverse.
    reference_tx_id  text,
    PRIMARY KEY (provider_id, provider_tx_id)
);
INSERT INTO transaction_keys (provider_id, provider_tx_id, id, created_at, player_id,
                              reference_tx_id)
SELECT provider_id, provider_tx_id, id, created_at, player_id,
       CASE WHEN kind = 'rollback' THEN reference_tx_id END
FROM transactions WHERE provider_id IS NOT NULL;
CREATE INDEX transaction_keys_reference ON transaction_keys (provider_id, reference_tx_id)
    WHERE reference_tx_id IS NOT NULL;
-- Pruning deletes a dropped day's keys by time; rows arrive in time order, so a BRIN index is
-- enough and costs the insert almost nothing.
CREATE INDEX transaction_keys_created_at ON transaction_keys USING brin (created_at);

-- 2. The ledger, partitioned by created_at. Its primary key becomes (id, created_at): ids stay
-- unique (one sequence), and a row is addressed by both so lookups touch one partition.
ALTER TABLE transactions RENAME TO transactions_initial;
ALTER TABLE transactions_initial DROP CONSTRAINT transactions_pkey;
ALTER TABLE transactions_initial DROP CONSTRAINT transactions_provider_id_provider_tx_id_key;
ALTER TABLE transactions_initial
    ADD CONSTRAINT transactions_initial_pkey PRIMARY KEY (id, created_at);
ALTER INDEX transactions_player_time RENAME TO transactions_initial_player_time;
ALTER INDEX transactions_round RENAME TO transactions_initial_round;
ALTER INDEX transactions_reference RENAME TO transactions_initial_reference;
-- Owned by the parent, so dropping the initial partition never drops the sequence.
ALTER SEQUENCE transactions_id_seq OWNED BY NONE;
CREATE TABLE transactions
    (LIKE transactions_initial INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS)
    PARTITION BY RANGE (created_at);
ALTER SEQUENCE transactions_id_seq OWNED BY transactions.id;
ALTER TABLE transactions ADD PRIMARY KEY (id, created_at);
CREATE INDEX transactions_player_time ON transactions (player_id, created_at);
CREATE INDEX transactions_round ON transactions (provider_id, player_id, round_id)
    WHERE round_id IS NOT NULL;
CREATE INDEX transactions_reference ON transactions (provider_id, reference_tx_id)
    WHERE reference_tx_id IS NOT NULL;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM transactions_initial) THEN
        EXECUTE format('ALTER TABLE transactions ATTACH PARTITION transactions_initial
                        FOR VALUES FROM (MINVALUE) TO (%L)',
                       date_trunc('day', now(), 'UTC') + interval '1 day');
    ELSE
        DROP TABLE transactions_initial;
    END IF;
END $$;

-- 3. What pruning took out of the ledger, per wallet: a wallet's balance equals these totals
-- plus the sum of its remaining ledger rows (reconciliation adds them).
CREATE TABLE ledger_pruned (
    player_id    bigint NOT NULL,
    currency     text NOT NULL,
    real_delta   bigint NOT NULL,
    bonus_delta  bigint NOT NULL,
    rows         bigint NOT NULL,
    -- Rows created before this time are pruned.
    through      timestamptz NOT NULL,
    PRIMARY KEY (player_id, currency)
);

-- 4. Kept callbacks, partitioned by the time of their segment's first record.
ALTER TABLE callback_segments RENAME TO callback_segments_initial;
ALTER TABLE callback_segments_initial DROP CONSTRAINT callback_segments_pkey;
ALTER TABLE callback_segments_initial
    ADD CONSTRAINT callback_segments_initial_pkey PRIMARY KEY (id, first_at);
ALTER INDEX callback_segments_tx RENAME TO callback_segments_initial_tx;
ALTER INDEX callback_segments_first_at RENAME TO callback_segments_initial_first_at;
-- PostgreSQL 15 has no identity columns on partitioned tables: ids come from a sequence that
-- goes on from the identity's last value.
ALTER TABLE callback_segments_initial ALTER COLUMN id DROP IDENTITY;
CREATE SEQUENCE callback_segments_id_seq AS bigint;
SELECT setval('callback_segments_id_seq', coalesce(max(id), 0) + 1, false)
FROM callback_segments_initial;
CREATE TABLE callback_segments
    (LIKE callback_segments_initial INCLUDING CONSTRAINTS INCLUDING COMMENTS)
    PARTITION BY RANGE (first_at);
ALTER TABLE callback_segments
    ALTER COLUMN id SET DEFAULT nextval('callback_segments_id_seq');
ALTER SEQUENCE callback_segments_id_seq OWNED BY callback_segments.id;
ALTER TABLE callback_segments ALTER COLUMN data SET STORAGE EXTERNAL;
ALTER TABLE callback_segments ADD PRIMARY KEY (id, first_at);
CREATE INDEX callback_segments_tx ON callback_segments USING gin (tx_keys)
    WITH (fastupdate = off);
CREATE INDEX callback_segments_first_at ON callback_segments USING brin (first_at);
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM callback_segments_initial) THEN
        EXECUTE format('ALTER TABLE callback_segments ATTACH PARTITION callback_segments_initial
                        FOR VALUES FROM (MINVALUE) TO (%L)',
                       date_trunc('day', now(), 'UTC') + interval '1 day');
    ELSE
        DROP TABLE callback_segments_initial;
    END IF;
END $$;
