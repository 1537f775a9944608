-- Who holds a server's deploy lock (the lock itself is a session advisory lock: it ends
-- with the holder's connection, so a dead control plane never leaves one behind). Read
-- for messages only.
CREATE TABLE server_locks (
    server   TEXT   PRIMARY KEY NOT NULL,
    holder   TEXT   NOT NULL,
    since_ms BIGINT NOT NULL
);
