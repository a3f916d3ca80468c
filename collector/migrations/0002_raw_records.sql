-- Raw records exactly as agents sent them, one table per record type, partitioned by month
-- (UTC) of the record's own time. collector/store.py creates the partitions: this month and
-- two ahead at start and hourly, and on demand for any month a batch touches, so a backlog
-- from months ago lands too. There is deliberately no DEFAULT partition: rows in it would
-- block creating the real partition for their month later.
--
-- There is no unique index on (agent_id, seq): the agent's seq high-water mark, read FOR UPDATE
-- in each batch's transaction, is what keeps a record from being stored twice. Such an index
-- would tax every COPY and, the partition key not being in it, could not be declared anyway.
--
-- With the timescaledb extension installed (and preloaded), the same tables become hypertables
-- with monthly chunks instead: footfall_use_hypertable() below converts each table at creation.
-- Integers are bigint because the protocol's are 64-bit; collector/ingest.py bounds them further.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND current_setting('shared_preload_libraries') LIKE '%timescaledb%' THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
    END IF;
END
$$;

-- Replace a natively partitioned table by a hypertable of the same shape when TimescaleDB is
-- enabled in this database; a no-op otherwise. Used here and by later migrations.
CREATE FUNCTION footfall_use_hypertable(tbl text, time_column text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN;
    END IF;
    EXECUTE format('ALTER TABLE %I RENAME TO %I', tbl, tbl || '_shape');
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING ALL)', tbl, tbl || '_shape');
    EXECUTE format('DROP TABLE %I', tbl || '_shape');
    PERFORM create_hypertable(tbl::regclass, time_column::name, chunk_time_interval => interval '1 month');
END
$$;

CREATE TABLE people_counts (
    org_id        text NOT NULL,
    site_id       text NOT NULL,
    agent_id      text NOT NULL,
    seq           bigint NOT NULL,
    sensor        text NOT NULL,
    line          text NOT NULL,
    period_start  timestamptz NOT NULL,
    period_end    timestamptz NOT NULL,
    entries       bigint NOT NULL,
    exits         bigint NOT NULL,
    clock         text NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (period_start);
CREATE INDEX people_counts_site_time ON people_counts (org_id, site_id, period_start);
CREATE INDEX people_counts_agent_seq ON people_counts (agent_id, seq);
SELECT footfall_use_hypertable('people_counts', 'period_start');

CREATE TABLE occupancy (
    org_id        text NOT NULL,
    site_id       text NOT NULL,
    agent_id      text NOT NULL,
    seq           bigint NOT NULL,
    sensor        text NOT NULL,
    zone          text NOT NULL,
    at            timestamptz NOT NULL,
    value         bigint NOT NULL,
    clock         text NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (at);
CREATE INDEX occupancy_site_time ON occupancy (org_id, site_id, at);
CREATE INDEX occupancy_agent_seq ON occupancy (agent_id, seq);
SELECT footfall_use_hypertable('occupancy', 'at');

CREATE TABLE transactions (
    org_id        text NOT NULL,
    site_id       text NOT NULL,
    agent_id      text NOT NULL,
    seq           bigint NOT NULL,
    terminal      text NOT NULL,
    txn_id        text NOT NULL,
    at            timestamptz NOT NULL,
    kind          text NOT NULL,
    amount_minor  bigint NOT NULL,
    currency      text NOT NULL,
    items         bigint NOT NULL,
    -- The receipt as the POS printed it, kept for audit.
    raw           text NOT NULL,
    -- How far `at` can be trusted: ok, restamped or suspect (see protocol/SPEC.md).
    clock         text NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (at);
CREATE INDEX transactions_site_time ON transactions (org_id, site_id, at);
CREATE INDEX transactions_agent_seq ON transactions (agent_id, seq);
SELECT footfall_use_hypertable('transactions', 'at');

CREATE TABLE sensor_events (
    org_id        text NOT NULL,
    site_id       text NOT NULL,
    agent_id      text NOT NULL,
    seq           bigint NOT NULL,
    sensor        text NOT NULL,
    at            timestamptz NOT NULL,
    kind          text NOT NULL,
    detail        text NOT NULL,
    -- For a gap event: the exact seq range the agent lost.
    lost_first    bigint NOT NULL,
    lost_last     bigint NOT NULL,
    clock         text NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (at);
CREATE INDEX sensor_events_site_time ON sensor_events (org_id, site_id, at);
CREATE INDEX sensor_events_agent_seq ON sensor_events (agent_id, seq);
SELECT footfall_use_hypertable('sensor_events', 'at');
