-- 0008: callbacks as received, for the back office's trace and replay. One row per request
-- per transaction id it names (a multi-action request leaves one row per action, each with the
-- whole request), written after the answer was sent by the gateway's trace writer, never in a
-- settlement transaction: losing a row costs a diagnosis, not money. Forward-only.
CREATE TABLE callback_requests (
    provider_id     integer NOT NULL,
    provider_tx_id  text NOT NULL,
    received_at     timestamptz NOT NULL,
    -- 'provider' (from the wire) or 'replay' (sent again from the back office).
    origin          text NOT NULL CHECK (origin IN ('provider', 'replay')),
    -- The TCP peer and the caller's address after the trusted-proxy rule.
    peer            text NOT NULL,
    caller_ip       text NOT NULL,
    method          text NOT NULL,
    -- Path and query string, as requested.
    target          text NOT NULL,
    -- "name: value" lines as received, credentials (Authorization, Cookie) redacted.
    headers         text NOT NULL,
    body            bytea NOT NULL,
    -- How the request's credentials were checked (every stored request passed).
    signature       text NOT NULL,
    status          smallint NOT NULL,
    answer          bytea NOT NULL,
    outcome         text NOT NULL,
    -- Where the answer came from: 'batch' (settled now), 'dedup_index', 'twin' (a concurrent
    -- duplicate's outcome), 'refused' (retryable refusal before settling).
    answered_by     text NOT NULL,
    duplicate       boolean NOT NULL,
    -- The settling commit: lane, the lane's batch counter, commands in the batch.
    lane            smallint,
    batch           bigint,
    batch_len       integer,
    -- Microseconds: body read, signature check, queued before the batch, the batch's
    -- transaction, and the whole request.
    read_us         integer NOT NULL,
    verify_us       integer NOT NULL,
    queued_us       integer,
    commit_us       integer,
    total_us        integer NOT NULL
);
CREATE INDEX callback_requests_tx ON callback_requests (provider_id, provider_tx_id);
