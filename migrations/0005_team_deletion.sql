-- A deleted team keeps its row, so that its ledger rows (and reports over them) keep a name: the
-- row is marked, renamed `<name>~deleted~<id>` to free the name, and its keys are revoked.
ALTER TABLE teams ADD COLUMN deleted_at TEXT;
