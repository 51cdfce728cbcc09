-- The roles a decider held for the promotion's application and environment when they
-- approved or rejected it, comma-separated (an attestation names these, not the roles
-- they hold later); NULL for decisions recorded before this column.
ALTER TABLE approvals ADD COLUMN roles TEXT;
