-- When each key (a server, `site:<domain>`) was last claimed for a check by a watch
-- process. A round claims its keys atomically and skips those another member checked
-- moments ago, so a member joining or leaving never makes a server checked twice in
-- one interval.
CREATE TABLE watch_claims (
    check_key TEXT   COLLATE "C" PRIMARY KEY NOT NULL,
    at_ms     BIGINT NOT NULL
);
