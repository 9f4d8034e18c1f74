-- After the call: confirmation texts, evaluation, routing, review, ingest, keys, events, and the
-- one outbox every delivery (SMS, email, webhook) and post-call job goes through.
-- Same conventions as 0001: epoch milliseconds, JSON as TEXT, UUID strings.

ALTER TABLE api_keys ADD COLUMN name TEXT NOT NULL DEFAULT '';

ALTER TABLE receptionists ADD COLUMN sms_confirmation BOOLEAN NOT NULL DEFAULT TRUE;
-- JSON array of interviewer ids this receptionist may ingest into.
ALTER TABLE receptionists ADD COLUMN interviewer_ids TEXT NOT NULL DEFAULT '[]';
ALTER TABLE receptionists ADD COLUMN default_interviewer_id TEXT;

-- status: awaiting_confirmation | confirmed | processing | evaluated (pipeline progress)
-- review: NULL | needs_review | approved | rejected (the decision), review_by 'system' or a key id
ALTER TABLE candidates ADD COLUMN review TEXT;
ALTER TABLE candidates ADD COLUMN review_by TEXT;
ALTER TABLE candidates ADD COLUMN reviewed_at BIGINT;
ALTER TABLE candidates ADD COLUMN ingested_interviewer_id TEXT;
ALTER TABLE candidates ADD COLUMN ingested_at BIGINT;
ALTER TABLE candidates ADD COLUMN confirmed_at BIGINT;
ALTER TABLE candidates ADD COLUMN confirmation_sms_at BIGINT;
ALTER TABLE candidates ADD COLUMN latest_score DOUBLE PRECISION;
CREATE INDEX candidates_workspace_review ON candidates (workspace_id, review, last_call_at);

-- The dialogue step a call ended at (analytics' drop-off), and when its after-call work was queued.
ALTER TABLE calls ADD COLUMN ended_step TEXT;
ALTER TABLE calls ADD COLUMN after_call_at BIGINT;

ALTER TABLE evaluations ADD COLUMN evaluator TEXT NOT NULL DEFAULT 'deterministic';

CREATE TABLE interviewers (
    id                  TEXT PRIMARY KEY,
    workspace_id        TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    invitation_message  TEXT NOT NULL,
    interview_link      TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX interviewers_workspace ON interviewers (workspace_id, created_at);

-- Everything that happened to a candidate, in order: decisions, notes, texts, status changes.
-- actor: 'system', 'caller' or 'key:<api key id>'.
CREATE TABLE candidate_history (
    id            TEXT PRIMARY KEY,
    candidate_id  TEXT NOT NULL REFERENCES candidates(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    actor         TEXT NOT NULL,
    detail        TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX candidate_history_candidate ON candidate_history (candidate_id, created_at);

-- Texts to and from candidates. purpose: confirmation | acknowledgement | invitation | reply.
-- Outbound rows point at the outbox row that delivers them; inbound rows carry Twilio's
-- MessageSid (unique, so a retried webhook is stored once).
CREATE TABLE sms_messages (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    candidate_id  TEXT REFERENCES candidates(id) ON DELETE SET NULL,
    direction     TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    purpose       TEXT NOT NULL,
    from_number   TEXT NOT NULL,
    to_number     TEXT NOT NULL,
    body          TEXT NOT NULL,
    provider_sid  TEXT UNIQUE,
    outbox_id     TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX sms_messages_candidate ON sms_messages (candidate_id, created_at);

-- Numbers that replied STOP to a workspace's receptionist numbers (START or YES undoes it).
CREATE TABLE sms_opt_outs (
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    phone_number  TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, phone_number)
);

CREATE TABLE webhook_endpoints (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    url           TEXT NOT NULL,
    events        TEXT NOT NULL,
    secret        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    deleted_at    BIGINT
);
CREATE INDEX webhook_endpoints_workspace ON webhook_endpoints (workspace_id, created_at);

-- Every event, whether or not an endpoint subscribed to it.
CREATE TABLE webhook_events (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    type          TEXT NOT NULL,
    data          TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX webhook_events_workspace ON webhook_events (workspace_id, created_at);

-- One outbox for every delivery and post-call job, one worker loop, one retry policy.
-- kind: sms | email | webhook | evaluate. status: pending | sent | failed (gave up or refused).
-- A worker claims due rows (claimed_until is its lease) and marks each sent or failed, or puts it
-- back with next_attempt_at pushed out. dedupe_key makes enqueueing idempotent.
CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,
    workspace_id     TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('sms', 'email', 'webhook', 'evaluate')),
    dedupe_key       TEXT UNIQUE,
    candidate_id     TEXT,
    endpoint_id      TEXT,
    event_id         TEXT,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    claimed_by       TEXT,
    claimed_until    BIGINT,
    last_error       TEXT,
    provider_ref     TEXT,
    created_at       BIGINT NOT NULL,
    sent_at          BIGINT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_endpoint ON outbox (endpoint_id, created_at);
CREATE INDEX outbox_candidate ON outbox (candidate_id, created_at);

CREATE TABLE outbox_attempts (
    outbox_id    TEXT NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,
    attempt      BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    status_code  BIGINT,
    error        TEXT,
    PRIMARY KEY (outbox_id, attempt)
);
