-- Facts about the state itself: `environment` (the `[env.<name>]` it belongs to, set on
-- first use; another environment is refused).
CREATE TABLE rpcc_meta (
    key   TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
