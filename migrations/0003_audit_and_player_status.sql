-- 0003: the back office's audit log (append-only) and the reason behind a player's status.
-- Forward-only.

-- Every admin mutation leaves one row, written in the same transaction as the change.
CREATE TABLE audit_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    actor_id        bigint,
    actor_role      text,
    -- e.g. `player.status`, `player.logout`.
    action          text NOT NULL,
    target_kind     text,
    target_id       text,
    before          jsonb,
    after           jsonb,
    reason          text,
    ip              text,
    correlation_id  text
);
CREATE INDEX audit_log_at ON audit_log (at, id);
CREATE INDEX audit_log_target ON audit_log (target_kind, target_id, at);

-- Append-only for everyone, the table's owner and superusers included: rows cannot be changed
-- or removed by the application's role (privileges revoked, and triggers refuse what
-- privileges alone would let an owner or a superuser do).
CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
DO $$ BEGIN
    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM %I', current_user);
END $$;

ALTER TABLE players
    ADD COLUMN status_reason     text,
    ADD COLUMN status_changed_at timestamptz;
