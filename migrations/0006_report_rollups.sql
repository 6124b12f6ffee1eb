-- 0006: report rollups, kept current by a job (rest::reports) that folds settled ledger rows
-- into per-day totals, so reports read thousands of rows, not the ledger. Forward-only.

-- Ledger rows with id <= last_id are folded in.
CREATE TABLE report_watermark (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_id   bigint NOT NULL
);
INSERT INTO report_watermark (last_id) VALUES (0);

-- Money by day, provider, game and currency (applied rows only), in minor units.
CREATE TABLE report_daily (
    day          date NOT NULL,
    provider_id  integer NOT NULL,
    game_id      text NOT NULL,
    currency     text NOT NULL,
    bets         bigint NOT NULL DEFAULT 0,
    -- The part of the stakes paid with bonus money.
    bonus_bets   bigint NOT NULL DEFAULT 0,
    wins         bigint NOT NULL DEFAULT 0,
    -- Returned by rollbacks (a rolled-back win counts negative).
    refunds      bigint NOT NULL DEFAULT 0,
    bet_count    bigint NOT NULL DEFAULT 0,
    -- Rounds whose first accepted bet fell on this day.
    rounds       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, provider_id, game_id, currency)
);

-- Who played, by day, provider and game (active players).
CREATE TABLE report_players_daily (
    day          date NOT NULL,
    provider_id  integer NOT NULL,
    game_id      text NOT NULL,
    player_id    bigint NOT NULL,
    PRIMARY KEY (day, provider_id, game_id, player_id)
);
