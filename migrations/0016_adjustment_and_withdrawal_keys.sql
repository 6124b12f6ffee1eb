-- 0016: what a staff member moved alone in a day counts toward the approval threshold (so that
-- splitting a large adjustment does not get around it): read by requester and day. And a
-- player's withdrawal may carry the caller's idempotency key, so a retried request reserves
-- the funds once. Forward-only.
CREATE INDEX adjustments_requester ON adjustments (requested_by, created_at);
ALTER TABLE withdrawals ADD COLUMN idempotency_key text
    CHECK (octet_length(idempotency_key) BETWEEN 1 AND 128);
CREATE UNIQUE INDEX withdrawals_idempotency_key ON withdrawals (player_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
