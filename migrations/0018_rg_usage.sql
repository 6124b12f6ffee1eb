-- 0018: a running total of each limited player's play per currency and UTC day, so a loss or
-- wager limit's use in its period is a sum of at most 31 daily rows instead of a sum over every
-- ledger row of the period (which grows with the player's activity: a bet a second is 2.6 M
-- rows by a month's end, read by every batch that player is in). The lanes add each batch's
-- share for the players of the batch who have a wager or loss limit in force; whenever a limit
-- row is written (by the REST module, or by anyone: the trigger below), that player's totals are
-- counted again from the ledger, so they are complete from the moment a limit exists.
-- No foreign key to players: a key check would take a share lock on the player's row from the
-- lane, which holds the wallet, while a limit's writer holds the player's row and waits for the
-- wallet. Forward-only.
CREATE TABLE rg_usage (
    player_id  bigint NOT NULL,
    currency   text NOT NULL,
    day        date NOT NULL,
    -- Money staked (bets, less bets rolled back) and money lost (stakes less wins; negative
    -- when the player is ahead), as the lanes count them (`World::use_limits`).
    wagered    bigint NOT NULL DEFAULT 0,
    lost       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (player_id, currency, day)
);

-- Counts a player's totals in a currency again from the ledger, from the earliest day any
-- period can start (this month or this week). The wallet is locked first, so a lane's batch
-- for this player either committed before (and its rows are counted here) or starts after (and
-- reads the limit and these totals once this transaction commits).
CREATE FUNCTION rg_usage_recount(p bigint, c text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    since timestamptz := least(date_trunc('month', now() AT TIME ZONE 'UTC'),
                               date_trunc('week', now() AT TIME ZONE 'UTC')) AT TIME ZONE 'UTC';
BEGIN
    PERFORM 1 FROM wallets WHERE player_id = p AND currency = c FOR UPDATE;
    DELETE FROM rg_usage WHERE player_id = p AND currency = c;
    INSERT INTO rg_usage (player_id, currency, day, wagered, lost)
    SELECT p, c, (t.created_at AT TIME ZONE 'UTC')::date,
           sum(CASE WHEN t.kind = 'bet' THEN t.amount
                    WHEN t.kind = 'rollback' AND t.real_delta + t.bonus_delta > 0 THEN -t.amount
                    ELSE 0 END),
           sum(-(t.real_delta + t.bonus_delta))
    FROM transactions t
    WHERE t.player_id = p AND t.currency = c
      AND t.kind IN ('bet', 'win', 'rollback') AND t.outcome = 'OK'
      AND t.created_at >= since
    GROUP BY 3;
END $$;

CREATE FUNCTION rg_limits_recount() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind IN ('wager', 'loss') THEN
        PERFORM rg_usage_recount(NEW.player_id, NEW.currency);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER rg_limits_recount AFTER INSERT OR UPDATE ON rg_limits
    FOR EACH ROW EXECUTE FUNCTION rg_limits_recount();

SELECT rg_usage_recount(player_id, currency)
FROM (SELECT DISTINCT player_id, currency FROM rg_limits WHERE kind IN ('wager', 'loss')) l;
