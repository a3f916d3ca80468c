-- Site and organization settings the analysts' API reads (collector/sitesettings.py validates them
-- and says what each means; the CHECKs here are the last line).
--
-- organizations.week_start: the first day of a `week` bucket, ISO weekday (1 = Monday, 7 = Sunday).
-- sites.visitors: which count is a visitor: entries, exits, or the mean of the two.
-- sites.day_reset: the local time the estimated occupancy (running in - out balance) restarts at zero.
-- sites.tags: free labels such as `region:north` or `format:mall`; groups of sites are asked by tag.
-- sites.opening_hours: the weekly trading hours, {"mon": [["09:00", "19:00"]], ...} (a missing day
--   is closed); NULL = no hours set, every quarter counts as trading.
-- sites.hours_exceptions: dated exceptions (holidays), {"2026-12-25": [], "2026-12-24": [["09:00", "14:00"]]}.
-- sites.expected_sensors: the sensors the site should have, by name; NULL = learnt from the data
--   (see site_sensors in 0005).

ALTER TABLE organizations
    ADD COLUMN week_start smallint NOT NULL DEFAULT 1 CHECK (week_start BETWEEN 1 AND 7);

ALTER TABLE sites
    ADD COLUMN visitors text NOT NULL DEFAULT 'entries' CHECK (visitors IN ('entries', 'exits', 'mean')),
    ADD COLUMN day_reset time NOT NULL DEFAULT '04:00'
        CHECK (extract(second FROM day_reset) = 0 AND extract(minute FROM day_reset)::int % 15 = 0),
    ADD COLUMN tags text[] NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 50),
    ADD COLUMN opening_hours jsonb CHECK (opening_hours IS NULL OR jsonb_typeof(opening_hours) = 'object'),
    ADD COLUMN hours_exceptions jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(hours_exceptions) = 'object'),
    ADD COLUMN expected_sensors text[] CHECK (cardinality(expected_sensors) <= 1000),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

CREATE INDEX sites_tags ON sites USING gin (tags);
