-- Certificates of acme and self_signed sites. The private key is the sealed secret
-- `cert/<site>/key` in `secrets`, written in the same transaction.
CREATE TABLE certificates (
    site        TEXT   COLLATE "C" PRIMARY KEY NOT NULL,
    names       TEXT   NOT NULL,
    origin      TEXT   NOT NULL CHECK (origin IN ('acme', 'self_signed')),
    chain_pem   TEXT   NOT NULL,
    fingerprint TEXT   NOT NULL,
    issuer      TEXT   NOT NULL,
    not_before  BIGINT NOT NULL,
    not_after   BIGINT NOT NULL,
    stored_ms   BIGINT NOT NULL
);
