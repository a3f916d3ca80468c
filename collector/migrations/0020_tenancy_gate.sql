-- One tenancy gate (issue 11): every route that acts for an organization runs under footfall_api
-- bound to that organization (collector/tenancy.py), the fleet admin API and the signed agent
-- routes included. This migration gives footfall_api what those routes write, puts the fleet
-- tables (0010) under the organization boundary, and forces row security on the tables' owner.
--
-- Forcing: without FORCE the owner (ingest, enrollment, the admin CLI) bypasses row security
-- silently. With it, the owner's access is the explicit policy `service` below: every row while
-- its transaction is bound to no organization, and only that organization's rows once it sets
-- footfall.org_id, exactly as footfall_api. A superuser or BYPASSRLS owner (the embedded cluster's)
-- is not subject to row security at all, forced or not.
--
-- The raw tables (people_counts, occupancy, transactions, sensor_events) keep row security enabled
-- but not forced: ingest writes them with binary COPY, which PostgreSQL refuses on a table whose row
-- security applies to the writer ("COPY FROM not supported with row-level security"). footfall_api
-- reads them through org_boundary and may not write them. tests/collector/test_tenancy.py lists
-- every table holding an organization's data and holds this file to it.

-- The fleet tables come under the same boundary as the rest (0007).
DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['config_versions', 'agent_log'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE format(
            'CREATE POLICY org_boundary ON %I USING (org_id = current_setting(''footfall.org_id'', true)) '
            'WITH CHECK (org_id = current_setting(''footfall.org_id'', true))', tbl);
        EXECUTE format('GRANT SELECT, INSERT ON %I TO footfall_api', tbl);
    END LOOP;
END
$$;

-- The owner's policy, on every table holding an organization's data; forced where ingest allows.
DO $$
DECLARE
    tbl text;
    unbound constant text := 'coalesce(current_setting(''footfall.org_id'', true), '''') = ''''';
BEGIN
    FOREACH tbl IN ARRAY ARRAY[
        'organizations', 'sites', 'enrollment_tokens', 'agents', 'api_keys', 'sensors',
        'counts_15m', 'counts_day', 'sales_15m', 'sales_day',
        'site_sensors', 'sensor_coverage_day', 'outages', 'occupancy_15m', 'occupancy_day', 'balance_day',
        'config_versions', 'agent_log',
        'people_counts', 'occupancy', 'transactions', 'sensor_events'
    ] LOOP
        EXECUTE format('CREATE POLICY service ON %I TO %I USING (%s) WITH CHECK (%s)',
                       tbl, (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = tbl::regclass),
                       unbound, unbound);
        IF tbl NOT IN ('people_counts', 'occupancy', 'transactions', 'sensor_events') THEN
            EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tbl);
        END IF;
    END LOOP;
END
$$;

-- What the fleet admin API writes (collector/api/fleet_admin.py, collector/fleet.py): tokens issued
-- and revoked, agents revoked or asked to rotate; and what the signed agent routes write
-- (collector/api/fleet_agents.py): heartbeats, configuration reports, a rotated key. The columns are
-- named so that the API can never move an agent to another site or organization, nor touch its seq
-- high-water mark, which only ingest writes.
GRANT INSERT ON enrollment_tokens TO footfall_api;
GRANT UPDATE (revoked) ON enrollment_tokens TO footfall_api;
GRANT UPDATE (
    status, revoked_at, rotate_requested_at, key_rotated_at, public_key,
    last_heartbeat_at, heartbeat, version, hostname, clock_skew_s,
    backlog_records, backlog_oldest_at, sources_total, sources_down, disk_free_bytes,
    config_applied_version, config_applied_at, config_rejected_version, config_error
) ON agents TO footfall_api;
