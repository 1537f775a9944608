-- Sealed secrets (rpcc:v1 envelopes only, never plain text), keyed by record identity.
-- Text keys compare byte-wise (COLLATE "C"), as in SQLite, so paging and order never
-- depend on the database's locale.
CREATE TABLE secrets (
    record     TEXT   COLLATE "C" PRIMARY KEY NOT NULL,
    key_id     TEXT   COLLATE "C" NOT NULL,
    envelope   TEXT   NOT NULL CHECK (envelope LIKE 'rpcc:%'),
    updated_ms BIGINT NOT NULL
);
CREATE INDEX secrets_by_key ON secrets (key_id, record);
