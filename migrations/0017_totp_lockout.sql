-- 0017: consecutive wrong second-factor codes lock the account's second factor for a while
-- (the rate limits alone would let a patient guesser through the 10^6 codes in weeks). A
-- table of its own, without a foreign key: the count is written beside the request's
-- transaction, which may hold the account's row (a key check would wait for it). Forward-only.
CREATE TABLE totp_failures (
    account_id    bigint PRIMARY KEY,
    failures      integer NOT NULL,
    locked_until  timestamptz
);
