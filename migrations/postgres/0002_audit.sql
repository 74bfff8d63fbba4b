-- The audit trail: every proxied call, every registry write, every denial.
-- Query strings are stored with sensitive values masked; no credential is
-- ever written here.
CREATE TABLE audit_records (
    id          BIGSERIAL   PRIMARY KEY,
    time        TIMESTAMPTZ NOT NULL,
    kind        TEXT        NOT NULL,
    subject     TEXT        NOT NULL,
    groups      TEXT        NOT NULL DEFAULT '[]',
    cluster     TEXT,
    method      TEXT        NOT NULL,
    path        TEXT        NOT NULL,
    query       TEXT,
    status      INTEGER     NOT NULL,
    bytes_in    BIGINT      NOT NULL DEFAULT 0,
    bytes_out   BIGINT      NOT NULL DEFAULT 0,
    duration_ms BIGINT      NOT NULL DEFAULT 0,
    decision    TEXT        NOT NULL,
    rule        TEXT,
    -- The asciicast file of a recorded exec/attach session.
    recording   TEXT
);

CREATE INDEX audit_records_time ON audit_records (time);
CREATE INDEX audit_records_cluster ON audit_records (cluster, id);
CREATE INDEX audit_records_subject ON audit_records (subject, id);
