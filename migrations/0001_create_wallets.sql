-- 0001: the wallet path. Forward-only: never edit an applied migration, add a new one.
--
-- Money columns are integers in the currency's minor units. A wallet's balance always equals
-- the sum of its ledger rows (real_delta for balance, bonus_delta for bonus).

CREATE TABLE providers (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    dialect     text NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE players (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The id providers know the player by (e.g. "player-1").
    external_id          text NOT NULL UNIQUE CHECK (octet_length(external_id) BETWEEN 1 AND 128),
    status               text NOT NULL DEFAULT 'active'
                         CHECK (status IN ('active', 'suspended', 'banned')),
    self_excluded_until  timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now()
);

-- Updated by every money callback: room on each page keeps the updates HOT (no index writes).
CREATE TABLE wallets (
    player_id    bigint NOT NULL REFERENCES players (id),
    currency     text NOT NULL CHECK (currency ~ '^[A-Z0-9]{3,5}$'),
    balance      bigint NOT NULL DEFAULT 0,
    bonus        bigint NOT NULL DEFAULT 0 CHECK (bonus >= 0),
    -- Set when a provider policy let the balance go negative (a rolled-back win).
    needs_reconciliation boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (player_id, currency),
    CHECK (balance >= 0 OR needs_reconciliation)
) WITH (fillfactor = 50);

-- Launch tokens: a bet needs a live one when its provider's policy says so.
CREATE TABLE game_sessions (
    token       text PRIMARY KEY CHECK (octet_length(token) BETWEEN 1 AND 256),
    player_id   bigint NOT NULL REFERENCES players (id),
    currency    text NOT NULL,
    game_id     text,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The ledger and the idempotency record in one: every provider callback that reached a
-- player's wallet leaves one row (applied or refused, with the answer that was sent), and every
-- balance change is one row. Money columns never change after insert; only `state` does.
--
-- No foreign keys here or on `rounds`: their checks would cost a lookup per inserted row on the
-- hottest path, and the wallet path only ever writes player and provider ids it has just read
-- (the player's locked wallet, the configured provider). Keeping the hot tables free of foreign
-- keys is also what lets them be distributed by player on Citus (see the README).
CREATE TABLE transactions (
    id               bigint PRIMARY KEY,
    provider_id      integer,
    provider_tx_id   text CHECK (octet_length(provider_tx_id) BETWEEN 1 AND 128),
    kind             text NOT NULL
                     CHECK (kind IN ('bet', 'win', 'rollback', 'deposit', 'adjustment')),
    -- The answer code given (OK or a final business refusal).
    outcome          text NOT NULL,
    -- bet: open -> settled (a win) | rolled_back; win: NULL -> rolled_back (policy permitting).
    state            text CHECK (state IN ('open', 'settled', 'rolled_back')),
    player_id        bigint NOT NULL,
    currency         text NOT NULL,
    round_id         text,
    game_id          text,
    -- The amount asked for, always >= 0; the signed effect is in the deltas.
    amount           bigint NOT NULL CHECK (amount >= 0),
    real_delta       bigint NOT NULL DEFAULT 0,
    bonus_delta      bigint NOT NULL DEFAULT 0,
    balance_before   bigint NOT NULL,
    balance_after    bigint NOT NULL,
    bonus_before     bigint NOT NULL,
    bonus_after      bigint NOT NULL,
    reference_tx_id  text,
    -- Hash of the semantic payload: a retry with the same id must carry the same one.
    fingerprint      bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider_id, provider_tx_id),
    CHECK ((provider_id IS NULL) = (provider_tx_id IS NULL)),
    CHECK (balance_after = balance_before + real_delta),
    CHECK (bonus_after = bonus_before + bonus_delta)
) WITH (fillfactor = 90);
CREATE SEQUENCE transactions_id_seq AS bigint OWNED BY transactions.id;
ALTER TABLE transactions ALTER COLUMN id SET DEFAULT nextval('transactions_id_seq');

CREATE INDEX transactions_player_time ON transactions (player_id, created_at);
CREATE INDEX transactions_round ON transactions (provider_id, player_id, round_id)
    WHERE round_id IS NOT NULL;
-- A rollback names the transaction it reverses: a rollback seen before its bet is a tombstone.
CREATE INDEX transactions_reference ON transactions (provider_id, reference_tx_id)
    WHERE reference_tx_id IS NOT NULL;

-- A round is one player's: live tables share round ids across players.
CREATE TABLE rounds (
    provider_id  integer NOT NULL,
    player_id    bigint NOT NULL,
    round_id     text NOT NULL CHECK (octet_length(round_id) BETWEEN 1 AND 128),
    game_id      text,
    closed       boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    closed_at    timestamptz,
    PRIMARY KEY (provider_id, player_id, round_id)
) WITH (fillfactor = 80);

-- Responsible-gaming limits the wallet path enforces on bets.
CREATE TABLE rg_limits (
    player_id     bigint NOT NULL REFERENCES players (id),
    currency      text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('max_bet', 'wager', 'loss')),
    period        text NOT NULL CHECK (period IN ('bet', 'day', 'week', 'month')),
    amount        bigint NOT NULL CHECK (amount >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (player_id, currency, kind, period),
    CHECK ((kind = 'max_bet') = (period = 'bet'))
);
