-- 0016: what a staff member moved alone in a day counts toward the approval threshold (so that
-- splitting a large adjustment does not get around it): read by requester and day.
-- Forward-only.
CREATE INDEX adjustments_requester ON adjustments (requested_by, created_at);
