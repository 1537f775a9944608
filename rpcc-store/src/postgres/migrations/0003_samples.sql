-- Metric samples recorded by `rpcc watch`, pruned to [monitor] retention.
CREATE TABLE metric_samples (
    server   TEXT             NOT NULL,
    at_ms    BIGINT           NOT NULL,
    cpu      DOUBLE PRECISION NOT NULL,
    mem      DOUBLE PRECISION NOT NULL,
    load1    DOUBLE PRECISION NOT NULL,
    disk_max DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (server, at_ms)
);
CREATE INDEX metric_samples_at ON metric_samples (at_ms);
