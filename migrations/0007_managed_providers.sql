-- 0007: providers managed through the back office (created, changed, enabled or disabled,
-- their secret rotated) without a restart. Providers of the configuration file keep NULL here
-- and are managed in the file. Forward-only.
ALTER TABLE providers
    -- {"secret", "previous_secret", "previous_until" (unix s), "allow_ips", "currency",
    --  "policy", "launch_url", "signature_window_s"}; secrets are never answered by the API.
    ADD COLUMN managed jsonb,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
