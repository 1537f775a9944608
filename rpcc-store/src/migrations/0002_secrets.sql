-- Sealed secrets (rpcc:v1 envelopes only, never plain text), keyed by record identity.
CREATE TABLE secrets (
    record TEXT PRIMARY KEY NOT NULL,
    key_id TEXT NOT NULL,
    envelope TEXT NOT NULL CHECK (envelope LIKE 'rpcc:%'),
    updated_ms INTEGER NOT NULL
);
CREATE INDEX secrets_by_key ON secrets (key_id, record);
