-- 0013: the ledger's index on (provider_id, reference_tx_id) goes. Since 0011 every read by a
-- referenced provider transaction id (tombstones, a rollback's game in the reports,
-- reconciliation's unmatched rollbacks) goes through `transaction_keys`, whose rollback rows
-- carry the reference; the ledger's index was written for about a third of its rows and read
-- by nothing (`pg_stat_user_indexes`: 0 scans under load). Forward-only.
DROP INDEX IF EXISTS transactions_reference;
DROP INDEX IF EXISTS transactions_initial_reference;
