-- The cluster registry. Names are unique case-insensitively through the
-- expression index, which also serves lookups (`lower(name) = lower($1)`) and
-- keyset paging (`ORDER BY lower(name)`). Credentials are stored sealed
-- (AES-256-GCM, see server/src/secrets.rs), never in plaintext.
CREATE TABLE clusters (
    id                    BIGSERIAL PRIMARY KEY,
    name                  TEXT        NOT NULL CHECK (length(name) BETWEEN 1 AND 63),
    title                 TEXT,
    url                   TEXT        NOT NULL,
    auth_provider         TEXT        NOT NULL,
    ca_data               TEXT,
    skip_tls_verify       BOOLEAN     NOT NULL DEFAULT FALSE,
    service_account_token BYTEA,
    client_cert_data      TEXT,
    client_key_data       BYTEA,
    dashboard_url         TEXT,
    oidc_token_provider   TEXT,
    skip_metrics_lookup   BOOLEAN     NOT NULL DEFAULT FALSE,
    labels                TEXT        NOT NULL DEFAULT '{}',
    version               BIGINT      NOT NULL DEFAULT 1,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);

CREATE UNIQUE INDEX clusters_name_key ON clusters (lower(name));
