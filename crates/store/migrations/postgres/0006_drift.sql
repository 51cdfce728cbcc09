-- Drift: what an environment was last observed running (reported by an agent that
-- reads it back), and since when that has differed from what Gantry deployed there.
ALTER TABLE environments ADD COLUMN observed_digest TEXT;
ALTER TABLE environments ADD COLUMN observed_at BIGINT;
ALTER TABLE environments ADD COLUMN observed_by TEXT;
ALTER TABLE environments ADD COLUMN drift_since BIGINT;
