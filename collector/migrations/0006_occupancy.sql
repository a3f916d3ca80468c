-- Occupancy rollups, written in the ingest transaction like the others (collector/store.py).
--
-- From occupancy sensors: the highest value each zone reported in a 15-minute UTC quarter and in
-- a local day. A site's occupancy for a bucket is the sum over its zones of each zone's peak at
-- the answer's source grain (quarters for 15m and hour answers, days for longer ones), and the
-- highest such sum over the bucket; with one zone, that is simply the peak.
CREATE TABLE occupancy_15m (
    org_id        text NOT NULL,
    site_id       text NOT NULL,
    bucket_start  timestamptz NOT NULL
                  CHECK (bucket_start = date_bin('15 minutes', bucket_start, timestamptz '2000-01-01 00:00+00')),
    agent_id      text NOT NULL,
    sensor        text NOT NULL,
    zone          text NOT NULL,
    peak          bigint NOT NULL,
    PRIMARY KEY (org_id, site_id, bucket_start, agent_id, sensor, zone)
) PARTITION BY RANGE (bucket_start);
SELECT footfall_use_hypertable('occupancy_15m', 'bucket_start');

CREATE TABLE occupancy_day (
    org_id        text NOT NULL,
    site_id       text NOT NULL,
    local_day     date NOT NULL,
    agent_id      text NOT NULL,
    sensor        text NOT NULL,
    zone          text NOT NULL,
    peak          bigint NOT NULL,
    PRIMARY KEY (org_id, site_id, local_day, agent_id, sensor, zone)
);

-- Without occupancy sensors, occupancy is estimated as the running balance of entries minus exits,
-- quarter by quarter, never below zero, restarting at zero at the site's daily reset time
-- (sites.day_reset). The balance depends on every earlier quarter since the last reset, so it is
-- not a sum that can be upserted. Ingest only bumps `version` of each local day whose reset
-- periods a batch touched (one small upsert, like the other rollups); a day answer that finds
-- `version > refreshed` replays those days from counts_15m with footfall_refresh_balance first.
-- `refreshed` is the version the replay started from, so a batch committed during a replay leaves
-- the day stale rather than wrongly fresh. Intraday answers replay the balance from counts_15m.
CREATE TABLE balance_day (
    org_id      text NOT NULL,
    site_id     text NOT NULL,
    local_day   date NOT NULL,
    peak        bigint NOT NULL DEFAULT 0 CHECK (peak >= 0),
    version     bigint NOT NULL DEFAULT 0,
    refreshed   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, site_id, local_day)
);

-- p_resets: the reset instants bounding the reset periods to replay, ascending (the balance is
-- replayed from p_resets[1] to the last one, restarting at each); p_days: the local days to write,
-- ascending, each wholly inside that span; p_day_starts: their first instants, plus the end of the
-- last one. Zones are computed by the caller (Python's zoneinfo), so the database and the API
-- agree on every local day. An advisory lock per site serialises concurrent batches of one site, so
-- the later one replays with the earlier one's quarters.
CREATE FUNCTION footfall_refresh_balance(p_org text, p_site text, p_resets timestamptz[], p_days date[],
                                         p_day_starts timestamptz[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    balance   bigint := 0;
    peaks     bigint[] := array_fill(0::bigint, ARRAY[cardinality(p_days)]);
    versions  bigint[];
    next_r    integer := 2;
    day_i     integer := 1;
    quarter   record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('ff-balance/' || p_org || '/' || p_site, 0));
    -- The versions before reading any count: a batch committing from here on keeps its days stale.
    SELECT array_agg(coalesce(b.version, 0) ORDER BY d.i) INTO versions
    FROM unnest(p_days) WITH ORDINALITY AS d(day, i)
    LEFT JOIN balance_day b ON b.org_id = p_org AND b.site_id = p_site AND b.local_day = d.day;
    FOR quarter IN
        SELECT bucket_start, sum(entries) AS e, sum(exits) AS x FROM counts_15m
        WHERE org_id = p_org AND site_id = p_site
          AND bucket_start >= p_resets[1] AND bucket_start < p_resets[cardinality(p_resets)]
        GROUP BY bucket_start ORDER BY bucket_start
    LOOP
        WHILE next_r <= cardinality(p_resets) AND quarter.bucket_start >= p_resets[next_r] LOOP
            balance := 0;
            next_r := next_r + 1;
        END LOOP;
        balance := greatest(0, balance + quarter.e - quarter.x);
        WHILE day_i <= cardinality(p_days) AND quarter.bucket_start >= p_day_starts[day_i + 1] LOOP
            day_i := day_i + 1;
        END LOOP;
        IF day_i <= cardinality(p_days) AND quarter.bucket_start >= p_day_starts[day_i] THEN
            peaks[day_i] := greatest(peaks[day_i], balance);
        END IF;
    END LOOP;
    INSERT INTO balance_day AS b (org_id, site_id, local_day, peak, version, refreshed)
    SELECT p_org, p_site, d.day, d.peak, d.version, d.version FROM unnest(p_days, peaks, versions) AS d(day, peak, version)
    ON CONFLICT (org_id, site_id, local_day)
    DO UPDATE SET peak = excluded.peak, refreshed = greatest(b.refreshed, excluded.refreshed);
END
$$;
