-- 0020: `rounds`' primary key leads with the round, then the player: (provider_id, round_id,
-- player_id) instead of (provider_id, player_id, round_id), as 0019 did for the ledger's
-- by-round index. The lanes read and write rounds by all three columns, so either order serves
-- them; led by the player, each active player had an insertion point of its own inside the
-- tree (a hot page per player, pages split in half and never refilled), led by the round the
-- round ids a provider hands out in sequence share one. A player's list of rounds
-- (`GET /api/user/rounds`) no longer reads this key: it walks the player's ledger rows by time
-- (`transactions_player_time`) and finds each round by its key. Rebuilds the key inside the
-- migration: on a large `rounds`, a start-up that takes longer once.
CREATE UNIQUE INDEX rounds_key_round_first ON rounds (provider_id, round_id, player_id);
ALTER TABLE rounds DROP CONSTRAINT rounds_pkey,
    ADD CONSTRAINT rounds_pkey PRIMARY KEY USING INDEX rounds_key_round_first;
