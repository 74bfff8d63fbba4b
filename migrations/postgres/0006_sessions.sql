-- Interactive sessions that any replica serves.
--
-- A one-time ticket is spent here, by the SHA-256 of its value, so that no
-- replica redeems it twice; rows are pruned once the ticket has expired.
CREATE TABLE spent_tickets (
    digest     TEXT PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX spent_tickets_expiry ON spent_tickets (expires_at);

-- Recorded exec and attach sessions (asciicast v2), written in chunks as
-- the session runs: a replica that stops loses at most the last chunk.
CREATE TABLE recordings (
    id         TEXT PRIMARY KEY,
    cluster    TEXT NOT NULL,
    subject    TEXT NOT NULL,
    path       TEXT NOT NULL,
    protocol   TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    ended_at   TIMESTAMPTZ,
    bytes      BIGINT NOT NULL DEFAULT 0,
    -- The session outgrew the size limit: the recording stops there.
    truncated  BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX recordings_started ON recordings (started_at, id);
CREATE INDEX recordings_cluster ON recordings (lower(cluster), started_at);
CREATE INDEX recordings_subject ON recordings (subject, started_at);

CREATE TABLE recording_chunks (
    recording TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    sequence  INTEGER NOT NULL,
    data      BYTEA NOT NULL,
    PRIMARY KEY (recording, sequence)
);
