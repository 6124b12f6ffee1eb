-- 0002: the REST module's tables: accounts (players and staff), login sessions, rotating
-- refresh tokens, and pending increases of responsible-gaming limits. Forward-only.

-- Who can log in. A player account is bound to the `players` row providers know (its
-- username is the player's external id); staff accounts have no player.
CREATE TABLE accounts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username        text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9_.-]{2,63}$'),
    -- Stored lower-cased; NULL for seeded accounts.
    email           text UNIQUE CHECK (email = lower(email)),
    -- Argon2id, PHC string format (algorithm, parameters and salt inside).
    password_hash   text NOT NULL,
    role            text NOT NULL CHECK (role IN ('admin', 'manager', 'support', 'player')),
    player_id       bigint UNIQUE REFERENCES players (id),
    -- RFC 6238 secret (base32). Set by 2FA setup, in force once `totp_enabled`.
    totp_secret     text,
    totp_enabled    boolean NOT NULL DEFAULT false,
    -- The last time step whose code was accepted: a code is accepted once.
    totp_last_step  bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'player') = (player_id IS NOT NULL)),
    CHECK (NOT totp_enabled OR totp_secret IS NOT NULL)
);

-- One login: the family of refresh tokens it hands out, revoked as a whole on logout or when
-- a spent refresh token is presented again. Access tokens name their session (`sid`).
CREATE TABLE auth_sessions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      bigint NOT NULL REFERENCES accounts (id),
    ip              text,
    -- The login passed a second factor (the back office needs it).
    mfa             boolean NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    revoked_reason  text
);
CREATE INDEX auth_sessions_account ON auth_sessions (account_id, created_at);

-- Opaque refresh tokens, stored as their SHA-256 only. Each is used once.
CREATE TABLE refresh_tokens (
    token_hash      bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    session_id      bigint NOT NULL REFERENCES auth_sessions (id),
    expires_at      timestamptz NOT NULL,
    spent_at        timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- A raised (or removed) limit takes effect only after a cooling-off period: until `next_from`
-- the old `amount` holds; from then on `next_amount` (NULL: the limit is gone).
ALTER TABLE rg_limits
    ADD COLUMN next_amount bigint CHECK (next_amount >= 0),
    ADD COLUMN next_from   timestamptz,
    ADD COLUMN updated_at  timestamptz NOT NULL DEFAULT now(),
    ADD CHECK (next_amount IS NULL OR next_from IS NOT NULL);
