-- `rpcc watch` processes sharing a fleet: each one's last heartbeat. Servers are split
-- between the members seen recently (rendezvous hashing), so each is checked by one.
CREATE TABLE watch_members (
    member  TEXT   COLLATE "C" PRIMARY KEY NOT NULL,
    seen_ms BIGINT NOT NULL
);
