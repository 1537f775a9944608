-- Generations rendered and staged per server (manifest as JSON: per-file hashes).
CREATE TABLE generations (
    server      TEXT   NOT NULL,
    id          TEXT   NOT NULL,
    tree_sha256 TEXT   NOT NULL,
    manifest    TEXT   NOT NULL,
    recorded_ms BIGINT NOT NULL,
    PRIMARY KEY (server, id)
);

-- One row per deploy / rollback / recovery; `state` is a DeploymentState name.
CREATE TABLE deployments (
    id          BIGSERIAL PRIMARY KEY,
    server      TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    generation  TEXT   NOT NULL,
    previous    TEXT,
    state       TEXT   NOT NULL,
    actor       TEXT   NOT NULL,
    started_ms  BIGINT NOT NULL,
    finished_ms BIGINT,
    detail      TEXT   NOT NULL DEFAULT ''
);
CREATE INDEX deployments_by_server ON deployments (server, id DESC);

-- Hash-chained audit log: hash = H(prev_hash, seq, every field). Appended under a
-- transaction-scoped advisory lock, so control planes never chain from the same head.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
    actor      TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    server     TEXT,
    generation TEXT,
    outcome    TEXT   NOT NULL,
    detail     TEXT   NOT NULL,
    prev_hash  TEXT   NOT NULL,
    hash       TEXT   NOT NULL
);
