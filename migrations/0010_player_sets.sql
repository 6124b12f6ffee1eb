-- 0010: active players kept as one set of player ids per (day, provider, game) instead of one
-- row per player: the players report unions at most a few thousand sets instead of counting
-- DISTINCT over millions of rows (one row per player, day and game came to half a row per
-- ledger row at 100,000 players). Forward-only.
--
-- `players` is a 64-bit roaring bitmap of player ids in the portable serialization
-- (RoaringTreemap, see rest::reports), written by the fold job under its advisory lock. Stored
-- without compression: the format is already compact and readers decode every set of a range.
CREATE TABLE report_player_sets (
    day          date NOT NULL,
    provider_id  integer NOT NULL,
    game_id      text NOT NULL,
    players      bytea NOT NULL,
    PRIMARY KEY (day, provider_id, game_id)
);
ALTER TABLE report_player_sets ALTER COLUMN players SET STORAGE EXTERNAL;

-- Rollups are derived from the ledger: the old per-player rows are dropped and every rollup is
-- rebuilt by the fold job from the first ledger row (reports fill in as it catches up; it
-- folds 2,000,000 ledger ids per step).
DROP TABLE report_players_daily;
DELETE FROM report_daily;
UPDATE report_watermark SET last_id = 0;
