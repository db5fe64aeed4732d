-- A refusal's row says which refusal: the outcome is the contract's class (`invalid`,
-- `refused_budget`, ...) and `error_code` the error code the client was sent.
ALTER TABLE ledger ADD COLUMN error_code TEXT;
