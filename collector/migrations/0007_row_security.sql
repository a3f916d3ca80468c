-- Row-level security: the organization boundary enforced by PostgreSQL itself, as defence in depth
-- behind the API's own `WHERE org_id = ...` (collector/tenancy.py).
--
-- The API's queries run inside a transaction that switches to the role footfall_api and sets
-- footfall.org_id to the calling key's organization:
--     SELECT set_config('role', 'footfall_api', true), set_config('footfall.org_id', 'acme', true)
-- footfall_api is neither superuser, nor owner, nor BYPASSRLS, so every policy below applies: a
-- query that forgot its org filter still sees only that organization's rows, and one with no
-- organization set sees nothing at all. Ingest, enrollment and the administrative commands run as
-- the connecting user (the tables' owner), which row security does not restrict.
--
-- footfall_api is a cluster-wide role without LOGIN, created here if missing and granted to the
-- user that runs the migrations (which therefore needs CREATEROLE, or an administrator creates
-- the role and grants it beforehand).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'footfall_api') THEN
        BEGIN
            CREATE ROLE footfall_api NOLOGIN NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database of this cluster created it at the same moment
        END;
    END IF;
    IF NOT pg_has_role(current_user, 'footfall_api', 'MEMBER') THEN
        EXECUTE format('GRANT footfall_api TO %I', current_user);
    END IF;
END
$$;

DO $$
DECLARE
    tbl text;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO footfall_api', current_schema());
    FOREACH tbl IN ARRAY ARRAY[
        'sites', 'enrollment_tokens', 'agents', 'api_keys', 'sensors',
        'people_counts', 'occupancy', 'transactions', 'sensor_events',
        'counts_15m', 'counts_day', 'sales_15m', 'sales_day',
        'site_sensors', 'sensor_coverage_day', 'outages', 'occupancy_15m', 'occupancy_day', 'balance_day'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE format(
            'CREATE POLICY org_boundary ON %I USING (org_id = current_setting(''footfall.org_id'', true)) '
            'WITH CHECK (org_id = current_setting(''footfall.org_id'', true))', tbl);
        EXECUTE format('GRANT SELECT ON %I TO footfall_api', tbl);
    END LOOP;
END
$$;

ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_boundary ON organizations
    USING (id = current_setting('footfall.org_id', true))
    WITH CHECK (id = current_setting('footfall.org_id', true));
GRANT SELECT, UPDATE (week_start) ON organizations TO footfall_api;

-- The fleet_admin API manages sites and retires sensors under the same boundary.
GRANT INSERT, UPDATE ON sites TO footfall_api;
GRANT UPDATE (retired_at) ON site_sensors TO footfall_api;
-- Changing a site's day_reset replays its estimated occupancy (footfall_refresh_balance).
GRANT INSERT, UPDATE ON balance_day TO footfall_api;
