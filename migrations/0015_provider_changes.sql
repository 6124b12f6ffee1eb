-- 0015: changes to game providers that wait for a second admin (four eyes): creating one,
-- rotating its secret, changing its policy. Whoever holds a provider's secret can sign wins,
-- so one admin alone must not be able to make one. The request is kept as made (a secret in
-- it until the change is applied, then removed). Forward-only.
CREATE TABLE provider_changes (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code          text NOT NULL,
    action        text NOT NULL CHECK (action IN ('create', 'rotate_secret', 'update')),
    request       jsonb NOT NULL,
    reason        text NOT NULL,
    state         text NOT NULL CHECK (state IN ('pending_approval', 'applied')),
    requested_by  bigint NOT NULL REFERENCES accounts (id),
    approved_by   bigint REFERENCES accounts (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    applied_at    timestamptz,
    CHECK (approved_by IS NULL OR approved_by <> requested_by),
    CHECK ((state = 'applied') = (approved_by IS NOT NULL))
);
CREATE INDEX provider_changes_pending ON provider_changes (created_at)
    WHERE state = 'pending_approval';
