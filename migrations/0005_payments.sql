-- 0005: money in and out through payment providers. Deposits credited by a signed webhook
-- (idempotent by the payment provider's own id), withdrawals reserved from the wallet when
-- asked for, then approved or rejected (a rejection returns the funds). Forward-only.

ALTER TABLE transactions DROP CONSTRAINT transactions_kind_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_kind_check
    CHECK (kind IN ('bet', 'win', 'rollback', 'deposit', 'adjustment', 'withdrawal')) NOT VALID;
ALTER TABLE transactions VALIDATE CONSTRAINT transactions_kind_check;

CREATE TABLE deposits (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    psp              text NOT NULL,
    psp_payment_id   text NOT NULL CHECK (octet_length(psp_payment_id) BETWEEN 1 AND 128),
    player_id        bigint NOT NULL REFERENCES players (id),
    currency         text NOT NULL,
    amount           bigint NOT NULL CHECK (amount > 0),
    ledger_id        bigint NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (psp, psp_payment_id)
);

CREATE TABLE withdrawals (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    player_id        bigint NOT NULL REFERENCES players (id),
    currency         text NOT NULL,
    amount           bigint NOT NULL CHECK (amount > 0),
    state            text NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),
    -- The ledger row that reserved the funds, and the one that returned them on rejection.
    reserve_ledger_id bigint NOT NULL,
    refund_ledger_id  bigint,
    decided_by       bigint REFERENCES accounts (id),
    reason           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    decided_at       timestamptz,
    CHECK ((state = 'rejected') = (refund_ledger_id IS NOT NULL))
);
CREATE INDEX withdrawals_player ON withdrawals (player_id, created_at);
CREATE INDEX withdrawals_pending ON withdrawals (created_at) WHERE state = 'pending';
