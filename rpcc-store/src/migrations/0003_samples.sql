-- Metric samples recorded by `rpcc watch`, pruned to [monitor] retention.
CREATE TABLE metric_samples (
    server     TEXT    NOT NULL,
    at_ms      INTEGER NOT NULL,
    cpu        REAL    NOT NULL,
    mem        REAL    NOT NULL,
    load1      REAL    NOT NULL,
    disk_max   REAL    NOT NULL,
    PRIMARY KEY (server, at_ms)
) WITHOUT ROWID;
CREATE INDEX metric_samples_at ON metric_samples (at_ms);
