-- 0014: a database the demo seeded says so, so that a start outside demo mode refuses it
-- instead of running production with the demo's public logins (admin password and TOTP
-- secret) and its players' free money. One row at most. A database seeded before this
-- migration is recognised by the demo admin's public TOTP secret. Forward-only.
CREATE TABLE IF NOT EXISTS demo_seeded (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seeded_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO demo_seeded (only_row)
SELECT true WHERE EXISTS (
    SELECT 1 FROM accounts WHERE totp_secret = 'JBSWY3DPEHPK3PXP'
)
ON CONFLICT DO NOTHING;
