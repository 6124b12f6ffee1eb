-- 0004: back-office balance adjustments: one row per request (its idempotency key, who asked,
-- who approved above the approval threshold, the ledger row it wrote). Forward-only.
CREATE TABLE adjustments (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE CHECK (octet_length(idempotency_key) BETWEEN 1 AND 128),
    player_id        bigint NOT NULL REFERENCES players (id),
    currency         text NOT NULL,
    -- Signed minor units: a credit is positive, a debit negative.
    delta            bigint NOT NULL CHECK (delta <> 0),
    reason           text NOT NULL,
    state            text NOT NULL CHECK (state IN ('pending_approval', 'applied')),
    requested_by     bigint NOT NULL REFERENCES accounts (id),
    approved_by      bigint REFERENCES accounts (id),
    ledger_id        bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    applied_at       timestamptz,
    CHECK (approved_by IS NULL OR approved_by <> requested_by),
    CHECK ((state = 'applied') = (ledger_id IS NOT NULL))
);
CREATE INDEX adjustments_player ON adjustments (player_id, created_at);
