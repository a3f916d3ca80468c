-- Tenancy and credentials: organizations -> sites -> agents -> sensors, and the enrollment
-- tokens and API keys that admit agents and people. Every table carries org_id, so that
-- row-level security per organization can be switched on later without reshaping anything.
-- Secrets (enrollment tokens, API keys) are stored as SHA-256 digests only, with a short
-- prefix to recognise them in a list; agents are known by their Ed25519 public key only.
-- Names and ids are checked here as well as in collector/admin.py: the database is the last line.

CREATE TABLE organizations (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sites (
    org_id      text NOT NULL REFERENCES organizations (id),
    -- Unique within its organization; it appears in API paths (/v1/sites/{id}/...).
    id          text NOT NULL CHECK (id ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- An IANA zone name (Europe/Paris). Local days and hours are computed in it; collector/admin.py
    -- checks it against the zone database, which PostgreSQL cannot do in an immutable CHECK.
    timezone    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);

CREATE TABLE enrollment_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      text NOT NULL,
    site_id     text NOT NULL,
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    prefix      text NOT NULL,
    expires_at  timestamptz NOT NULL,
    uses_left   integer NOT NULL CHECK (uses_left >= 0),
    revoked     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (org_id, site_id) REFERENCES sites (org_id, id)
);

CREATE TABLE agents (
    id            text PRIMARY KEY CHECK (id ~ '^agt_[a-z0-9]{8,64}$'),
    org_id        text NOT NULL,
    site_id       text NOT NULL,
    public_key    bytea NOT NULL UNIQUE CHECK (length(public_key) = 32),
    -- The token it enrolled with: the same token and key enrolling again (an agent that never
    -- saw the first answer) get this agent back instead of a conflict.
    enrollment_token_id bigint,
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    -- The seq high-water mark: every record of this agent with seq <= hw_seq is committed, and
    -- ingest drops such records as duplicates. Read FOR UPDATE in each batch's transaction.
    hw_seq        bigint NOT NULL DEFAULT 0 CHECK (hw_seq >= 0),
    enrolled_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    last_seen_at  timestamptz,
    version       text NOT NULL DEFAULT '',
    hostname      text NOT NULL DEFAULT '',
    -- The agent's request timestamp minus the collector's clock at its last upload, in seconds.
    clock_skew_s  double precision,
    FOREIGN KEY (org_id, site_id) REFERENCES sites (org_id, id),
    FOREIGN KEY (enrollment_token_id) REFERENCES enrollment_tokens (id)
);
CREATE INDEX agents_org_site ON agents (org_id, site_id);

CREATE TABLE api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      text NOT NULL REFERENCES organizations (id),
    key_hash    bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    prefix      text NOT NULL,
    -- analyst: read the metrics of the organization's sites; fleet_admin: that and the fleet admin API.
    role        text NOT NULL CHECK (role IN ('analyst', 'fleet_admin')),
    name        text NOT NULL DEFAULT '',
    revoked     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_org ON api_keys (org_id);

-- Sensors and POS terminals are not registered: they are learnt from the records agents send.
-- Their names are agent-local, so the agent is part of the key. The times are record times
-- (the earliest and latest reading seen), not upload times.
CREATE TABLE sensors (
    org_id          text NOT NULL,
    site_id         text NOT NULL,
    agent_id        text NOT NULL REFERENCES agents (id),
    kind            text NOT NULL CHECK (kind IN ('sensor', 'terminal')),
    name            text NOT NULL,
    first_seen_at   timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    PRIMARY KEY (agent_id, kind, name)
);
CREATE INDEX sensors_org_site ON sensors (org_id, site_id);
