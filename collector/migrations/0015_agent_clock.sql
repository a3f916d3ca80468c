-- The agent's clock as the collector sees it (issue 7). Agents time some readings themselves (polled
-- totals); while an agent's clock is untrusted it holds those readings, re-stamps them once it is, and
-- flags as `suspect` those it cannot correct. Ingest counts both from each record's `clock` field and
-- judges the clock from the batch: `skewed` when the agent's own clock (the batch's sent_at) is more than
-- 30 s from ours, else `suspect` or `restamped` when the batch carried such readings, else `ok`.
ALTER TABLE agents
    ADD COLUMN clock_state text NOT NULL DEFAULT 'unknown'
        CHECK (clock_state IN ('unknown', 'ok', 'skewed', 'restamped', 'suspect')),
    ADD COLUMN clock_checked_at timestamptz,
    ADD COLUMN readings_restamped bigint NOT NULL DEFAULT 0 CHECK (readings_restamped >= 0),
    ADD COLUMN readings_suspect bigint NOT NULL DEFAULT 0 CHECK (readings_suspect >= 0);

COMMENT ON COLUMN agents.clock_skew_s IS
    'the agent''s clock (the batch''s sent_at) minus the collector''s, in seconds, at its last upload';
