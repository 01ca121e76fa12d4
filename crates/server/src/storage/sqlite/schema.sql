-- WeCare Realtime embedded store, schema version 3 (see mod.rs for migrations).
-- meta: stream_id (random, fixed at creation) and head (last seq given out;
-- kept here rather than derived from MAX(seq) so that it never goes back
-- after retention pruned the newest rows).
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- The stream. body is the watcher payload exactly as sent live, so replay
-- is a read and a copy.
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY,
    kind        INTEGER NOT NULL,
    driver_id   TEXT    NOT NULL,
    msg_id      TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    body        TEXT    NOT NULL
);
-- Dedup key: (driver, client message id), for as long as the event is kept.
CREATE UNIQUE INDEX IF NOT EXISTS events_dedup ON events (driver_id, msg_id);
CREATE INDEX IF NOT EXISTS events_track ON events (driver_id, kind, recorded_at);
CREATE INDEX IF NOT EXISTS events_received ON events (received_at);

-- Latest state per driver, kept forever (retention never touches it).
CREATE TABLE IF NOT EXISTS drivers (
    driver_id    TEXT PRIMARY KEY,
    lat          REAL,
    lng          REAL,
    recorded_at  INTEGER,
    effective_at INTEGER,
    status       TEXT NOT NULL,
    email        TEXT,
    last_seen    INTEGER NOT NULL,
    online       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Named readers' positions in the stream (the forwarder's), kept across restarts.
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
) WITHOUT ROWID;

-- Revoked tokens (by hash) and users (tokens issued at or before at_secs).
CREATE TABLE IF NOT EXISTS revocations (
    kind       TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    at_secs    INTEGER NOT NULL,
    until_secs INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
