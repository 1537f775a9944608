-- Generations rendered and staged per server (manifest as JSON: per-file hashes).
CREATE TABLE generations (
    server      TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    tree_sha256 TEXT    NOT NULL,
    manifest    TEXT    NOT NULL,
    recorded_ms INTEGER NOT NULL,
    PRIMARY KEY (server, id)
);

-- One row per deploy / rollback / recovery; `state` is a DeploymentState name.
CREATE TABLE deployments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    server      TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    generation  TEXT    NOT NULL,
    previous    TEXT,
    state       TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    started_ms  INTEGER NOT NULL,
    finished_ms INTEGER,
    detail      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX deployments_by_server ON deployments (server, id DESC);

-- Hash-chained audit log: hash = H(prev_hash, seq, every field).
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    at_ms      INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    server     TEXT,
    generation TEXT,
    outcome    TEXT    NOT NULL,
    detail     TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL
);
