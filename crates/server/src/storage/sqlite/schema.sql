-- WeCare Realtime embedded store, schema version 6 (see upgrade.rs for migrations).
-- meta: stream_id (random, fixed at creation) and head (last seq given out;
-- kept here rather than derived from MAX(seq) so that it never goes back
-- after retention pruned the newest rows).
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Drivers and senders' labels (the token's email and name, '' for none),
-- interned: an event row names them by number (issue 17).
CREATE TABLE IF NOT EXISTS names (
    ix        INTEGER PRIMARY KEY,
    driver_id TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS labels (
    ix    INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    name  TEXT NOT NULL,
    UNIQUE (email, name)
);

-- The stream, in typed columns; the watcher JSON is rendered from them
-- (once per event live, once per row on replay). msg_id is packed
-- (packed_id.rs). recorded_at: fixes only. status: a status event's
-- status, a fix's current status (row.rs codes). flags: outdated 1,
-- adjusted 2, online 4.
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY,
    kind        INTEGER NOT NULL,
    driver      INTEGER NOT NULL,
    label       INTEGER,
    msg_id      BLOB    NOT NULL,
    recorded_at INTEGER,
    received_at INTEGER NOT NULL,
    lat         REAL,
    lng         REAL,
    accuracy    REAL,
    heading     REAL,
    speed       REAL,
    status      INTEGER NOT NULL,
    flags       INTEGER NOT NULL
);
-- Dedup key: (driver, client message id), for as long as the event is kept.
CREATE UNIQUE INDEX IF NOT EXISTS events_dedup ON events (driver, msg_id);
CREATE INDEX IF NOT EXISTS events_track ON events (driver, recorded_at) WHERE kind = 1;
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
