-- Completeness: which of a site's sensors reported in each 15-minute quarter, and the outages
-- agents told us about. Both are written in the ingest transaction (collector/store.py), so the
-- API never scans raw rows to tell a quiet hour from a broken sensor.
--
-- site_sensors: the counting and occupancy sensors of a site, learnt from the data and keyed by
-- name within the site (so two gateways of one store should give their sensors distinct names).
-- A learnt sensor is expected from the quarter of its first reading on, until an administrator
-- retires it (retired_at); a dead sensor therefore keeps showing as missing, which is the point.
-- When sites.expected_sensors is set, exactly those names are expected instead.
CREATE TABLE site_sensors (
    org_id           text NOT NULL,
    site_id          text NOT NULL,
    sensor           text NOT NULL,
    counts           boolean NOT NULL DEFAULT false,
    occupancy        boolean NOT NULL DEFAULT false,
    reporting_since  timestamptz NOT NULL,
    last_report_at   timestamptz NOT NULL,
    retired_at       timestamptz,
    PRIMARY KEY (org_id, site_id, sensor),
    FOREIGN KEY (org_id, site_id) REFERENCES sites (org_id, id)
);

-- One row per sensor and local day: bit i of `mask` is set when the sensor reported for the i-th
-- 15-minute quarter of the local day (counted from the day's first instant; a day has 92 to 100).
-- A count marks every quarter its period overlaps, an occupancy reading the quarter of its time.
-- Upserts OR the masks, so the row is exact whatever the order or the overlap of batches;
-- `quarters` is bit_count(mask), kept beside it so day answers sum an integer.
CREATE TABLE sensor_coverage_day (
    org_id      text NOT NULL,
    site_id     text NOT NULL,
    local_day   date NOT NULL,
    sensor      text NOT NULL,
    mask        bit(128) NOT NULL,
    quarters    integer NOT NULL CHECK (quarters BETWEEN 0 AND 128),
    PRIMARY KEY (org_id, site_id, local_day, sensor)
);

-- Periods when data is missing for a known reason:
--  gap:     an agent's buffer overflowed and dropped seqs lost_first..lost_last; the window runs
--           from the newest record before the loss to the oldest record after it (by seq);
--  offline: a sensor (or the agent, sensor 'agent') said it went offline; ends_at is NULL until
--           the matching `online` event arrives.
CREATE TABLE outages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      text NOT NULL,
    site_id     text NOT NULL,
    agent_id    text NOT NULL,
    sensor      text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('gap', 'offline')),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz CHECK (ends_at >= starts_at),
    lost_first  bigint NOT NULL DEFAULT 0,
    lost_last   bigint NOT NULL DEFAULT 0,
    detail      text NOT NULL DEFAULT '',
    seq         bigint NOT NULL
);
CREATE INDEX outages_site_time ON outages (org_id, site_id, starts_at);
CREATE INDEX outages_open ON outages (agent_id, sensor) WHERE ends_at IS NULL AND kind = 'offline';
