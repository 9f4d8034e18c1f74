-- Initial schema. Times are epoch milliseconds (BIGINT); JSON is TEXT; ids are UUID strings.

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Only a SHA-256 (hex) of each key is stored.
CREATE TABLE api_keys (
    key_hash      TEXT PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id);

CREATE TABLE receptionists (
    id                          TEXT PRIMARY KEY,
    workspace_id                TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    phone_number                TEXT NOT NULL UNIQUE,
    agent_name                  TEXT NOT NULL,
    voice                       TEXT NOT NULL,
    intro_message               TEXT NOT NULL,
    language_mode               TEXT NOT NULL,
    manual_approval             BOOLEAN NOT NULL,
    disclose_ai                 BOOLEAN NOT NULL,
    disclose_recording          BOOLEAN NOT NULL,
    disclose_e_verify           BOOLEAN NOT NULL,
    collect_location            BOOLEAN NOT NULL,
    enforce_job_location_match  BOOLEAN NOT NULL,
    custom_context              TEXT NOT NULL,
    questions                   TEXT NOT NULL,
    score_threshold             BIGINT NOT NULL CHECK (score_threshold BETWEEN 0 AND 100),
    status                      TEXT NOT NULL CHECK (status IN ('live', 'inactive')),
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL
);
CREATE INDEX receptionists_workspace ON receptionists (workspace_id, created_at);

-- One candidate per workspace and phone number; callers without a usable number (phone NULL)
-- get a new candidate per call.
CREATE TABLE candidates (
    id               TEXT PRIMARY KEY,
    workspace_id     TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    receptionist_id  TEXT NOT NULL REFERENCES receptionists(id),
    phone_number     TEXT,
    name             TEXT,
    location         TEXT,
    email            TEXT,
    status           TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    last_call_at     BIGINT NOT NULL,
    UNIQUE (workspace_id, phone_number)
);
CREATE INDEX candidates_workspace_last_call ON candidates (workspace_id, last_call_at);

CREATE TABLE calls (
    id                 TEXT PRIMARY KEY,
    workspace_id       TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    receptionist_id    TEXT NOT NULL REFERENCES receptionists(id),
    carrier            TEXT NOT NULL,
    carrier_call_sid   TEXT NOT NULL UNIQUE,
    stream_sid         TEXT,
    from_number        TEXT NOT NULL,
    to_number          TEXT NOT NULL,
    forwarded_from     TEXT,
    token_hash         TEXT NOT NULL,
    node_id            TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('accepted', 'in_progress', 'completed', 'interrupted')),
    accepted_at        BIGINT NOT NULL,
    started_at         BIGINT,
    ended_at           BIGINT,
    duration_ms        BIGINT,
    end_reason         TEXT,
    recording_path     TEXT,
    candidate_id       TEXT REFERENCES candidates(id),
    settings           TEXT NOT NULL
);
CREATE INDEX calls_workspace_accepted ON calls (workspace_id, accepted_at);
CREATE INDEX calls_candidate ON calls (candidate_id);
CREATE INDEX calls_node_status ON calls (node_id, status);

-- Append-only: the serialized model::CallEvent of each event, in order.
CREATE TABLE call_events (
    call_id  TEXT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    seq      BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    payload  TEXT NOT NULL,
    PRIMARY KEY (call_id, seq)
);

CREATE TABLE evaluations (
    id                  TEXT PRIMARY KEY,
    candidate_id        TEXT NOT NULL REFERENCES candidates(id) ON DELETE CASCADE,
    call_id             TEXT REFERENCES calls(id),
    receptionist_id     TEXT NOT NULL REFERENCES receptionists(id),
    score               DOUBLE PRECISION NOT NULL,
    dealbreaker_failed  BOOLEAN NOT NULL,
    details             TEXT NOT NULL,
    summary             TEXT NOT NULL,
    created_at          BIGINT NOT NULL
);
CREATE INDEX evaluations_candidate ON evaluations (candidate_id, created_at);
