-- Rollups, upserted in the same transaction as the raw rows they summarise (collector/store.py),
-- so they are exact and a replayed batch changes them no more than it changes the raw tables.
--
-- Two grains. 15-minute buckets in UTC answer intraday questions in any zone: every UTC offset
-- in use is a multiple of 15 minutes, so any local hour is a union of whole buckets. Local-day
-- rows, the day computed in the site's zone at ingest, answer day, week and month questions
-- without scanning 96 rows per day; a day in UTC would be the wrong day for every store.
--
-- A count lands wholly in the bucket, and the local day, of its period start. Counters report
-- periods of one bucket or less; splitting a longer period across buckets would invent a
-- distribution the sensor never measured. A transaction lands in the bucket of its time.
--
-- Sensor and terminal names are agent-local, so agent_id is part of every key. The 15-minute
-- tables are partitioned by month like the raw tables (hypertables with TimescaleDB); the day
-- tables are small (one row per line per day) and are not.

CREATE TABLE counts_15m (
    org_id        text NOT NULL,
    site_id       text NOT NULL,
    bucket_start  timestamptz NOT NULL
                  CHECK (bucket_start = date_bin('15 minutes', bucket_start, timestamptz '2000-01-01 00:00+00')),
    agent_id      text NOT NULL,
    sensor        text NOT NULL,
    line          text NOT NULL,
    entries       bigint NOT NULL,
    exits         bigint NOT NULL,
    PRIMARY KEY (org_id, site_id, bucket_start, agent_id, sensor, line)
) PARTITION BY RANGE (bucket_start);
SELECT footfall_use_hypertable('counts_15m', 'bucket_start');

CREATE TABLE counts_day (
    org_id        text NOT NULL,
    site_id       text NOT NULL,
    local_day     date NOT NULL,
    agent_id      text NOT NULL,
    sensor        text NOT NULL,
    line          text NOT NULL,
    entries       bigint NOT NULL,
    exits         bigint NOT NULL,
    PRIMARY KEY (org_id, site_id, local_day, agent_id, sensor, line)
);

-- Amounts are in the currency's minor unit and always positive; the columns say which kind.
-- `items` counts the items of sales only.
CREATE TABLE sales_15m (
    org_id          text NOT NULL,
    site_id         text NOT NULL,
    bucket_start    timestamptz NOT NULL
                    CHECK (bucket_start = date_bin('15 minutes', bucket_start, timestamptz '2000-01-01 00:00+00')),
    agent_id        text NOT NULL,
    terminal        text NOT NULL,
    currency        text NOT NULL,
    sales_count     bigint NOT NULL,
    sales_amount    bigint NOT NULL,
    refunds_count   bigint NOT NULL,
    refunds_amount  bigint NOT NULL,
    voids_count     bigint NOT NULL,
    voids_amount    bigint NOT NULL,
    items           bigint NOT NULL,
    PRIMARY KEY (org_id, site_id, bucket_start, agent_id, terminal, currency)
) PARTITION BY RANGE (bucket_start);
SELECT footfall_use_hypertable('sales_15m', 'bucket_start');

CREATE TABLE sales_day (
    org_id          text NOT NULL,
    site_id         text NOT NULL,
    local_day       date NOT NULL,
    agent_id        text NOT NULL,
    terminal        text NOT NULL,
    currency        text NOT NULL,
    sales_count     bigint NOT NULL,
    sales_amount    bigint NOT NULL,
    refunds_count   bigint NOT NULL,
    refunds_amount  bigint NOT NULL,
    voids_count     bigint NOT NULL,
    voids_amount    bigint NOT NULL,
    items           bigint NOT NULL,
    PRIMARY KEY (org_id, site_id, local_day, agent_id, terminal, currency)
);
