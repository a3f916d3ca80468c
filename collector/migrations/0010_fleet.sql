-- Fleet operations (protocol/SPEC.md sections 8-11): what each agent last reported in its
-- heartbeat, the configuration versions fleet admins push and which agents they target, key
-- rotation, and a short per-agent log of fleet events (revoked, key rotated, config applied or
-- refused, a source going down) that `footfall fleet agents show` prints.

-- The last heartbeat, kept whole (`heartbeat`) for `agents show`, with the figures the fleet
-- list sorts and filters on copied into columns. `last_heartbeat_at` is the collector's clock.
ALTER TABLE agents
    ADD COLUMN last_heartbeat_at      timestamptz,
    ADD COLUMN heartbeat              jsonb,
    ADD COLUMN backlog_records        bigint,
    ADD COLUMN backlog_oldest_at      timestamptz,
    ADD COLUMN sources_total          integer,
    ADD COLUMN sources_down           integer,
    ADD COLUMN disk_free_bytes        bigint,
    -- The fleet configuration the agent says it runs (0: its local file), and the last it refused.
    ADD COLUMN config_applied_version bigint NOT NULL DEFAULT 0,
    ADD COLUMN config_applied_at      timestamptz,
    ADD COLUMN config_rejected_version bigint NOT NULL DEFAULT 0,
    ADD COLUMN config_error           text NOT NULL DEFAULT '',
    -- Set by `footfall fleet agents rotate-key`; cleared when the agent has rotated.
    ADD COLUMN rotate_requested_at    timestamptz,
    ADD COLUMN key_rotated_at         timestamptz;

-- One row per push. The text is the agent.toml the agents fetch; versions increase across the
-- whole collector (so a version number names one text), agents only ever see their organization's.
CREATE TABLE config_versions (
    version     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      text NOT NULL REFERENCES organizations (id),
    body        text NOT NULL CHECK (octet_length(body) <= 262144),
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    -- Who the push targeted: one agent, one site or every agent of the organization.
    scope       text NOT NULL CHECK (scope IN ('agent', 'site', 'all')),
    target      text NOT NULL DEFAULT '',
    note        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((scope = 'all') = (target = ''))
);
-- The desired configuration of an agent: the newest push whose scope covers it.
CREATE INDEX config_versions_target ON config_versions (org_id, scope, target, version DESC);

CREATE TABLE agent_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      text NOT NULL,
    agent_id    text NOT NULL REFERENCES agents (id),
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,
    detail      text NOT NULL DEFAULT ''
);
CREATE INDEX agent_log_agent ON agent_log (agent_id, at DESC);
