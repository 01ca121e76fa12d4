-- WeCare Realtime on PostgreSQL, schema version 3 (upgrade.rs): the same stream as the
-- embedded store, shared by every node, plus what the nodes coordinate on.
-- Every time here is epoch milliseconds of the database's clock, so nodes
-- with skewed clocks still agree on leases and grace periods.

-- The one row of the stream: its id, its head (the last seq given out;
-- the counter every commit takes with UPDATE ... RETURNING, which holds the
-- row's lock until the commit, so commits become visible in seq order and
-- seq has no holes), and where retention stopped.
CREATE TABLE IF NOT EXISTS stream (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    stream_id      TEXT    NOT NULL,
    head           BIGINT  NOT NULL,
    pruned_through BIGINT  NOT NULL DEFAULT 0,
    schema_version INTEGER NOT NULL
);

-- Drivers and senders' labels (the token's email and name, '' for none),
-- interned: an event row names them by number (issue 17). Numbers are
-- given under the stream lock, so nodes never race for one.
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

-- The stream, in typed columns (widest first: no alignment padding); the
-- watcher JSON is rendered from them. msg_id is packed (packed_id.rs).
-- recorded_at: fixes only. status: a status event's status, a fix's
-- current status (row.rs codes). flags: outdated 1, adjusted 2, online 4.
CREATE TABLE IF NOT EXISTS events (
    seq         BIGINT           PRIMARY KEY,
    received_at BIGINT           NOT NULL,
    recorded_at BIGINT,
    lat         DOUBLE PRECISION,
    lng         DOUBLE PRECISION,
    accuracy    DOUBLE PRECISION,
    heading     DOUBLE PRECISION,
    speed       DOUBLE PRECISION,
    driver      INTEGER          NOT NULL,
    label       INTEGER,
    kind        SMALLINT         NOT NULL,
    status      SMALLINT         NOT NULL,
    flags       SMALLINT         NOT NULL,
    msg_id      BYTEA            NOT NULL
);
-- Dedup key: (driver, client message id), for as long as the event is kept.
CREATE UNIQUE INDEX IF NOT EXISTS events_dedup ON events (driver, msg_id);
CREATE INDEX IF NOT EXISTS events_track ON events (driver, recorded_at) WHERE kind = 1;
CREATE INDEX IF NOT EXISTS events_received ON events (received_at);

-- Latest state per driver, kept forever.
CREATE TABLE IF NOT EXISTS drivers (
    driver_id    TEXT PRIMARY KEY,
    lat          DOUBLE PRECISION,
    lng          DOUBLE PRECISION,
    recorded_at  BIGINT,
    effective_at BIGINT,
    status       TEXT    NOT NULL,
    email        TEXT,
    last_seen    BIGINT  NOT NULL,
    online       BOOLEAN NOT NULL DEFAULT FALSE
);

-- Named readers' positions (the forwarder's).
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    seq  BIGINT NOT NULL
);

-- Nodes and their leases: a node renews its lease every few seconds; one
-- whose lease ran out is dead, and its sockets count as closed then.
CREATE TABLE IF NOT EXISTS nodes (
    node_id     TEXT   PRIMARY KEY,
    started_at  BIGINT NOT NULL,
    lease_until BIGINT NOT NULL
);

-- Drivers' sockets per node, and when a driver's last socket on that node
-- closed: the presence guard reads these.
CREATE TABLE IF NOT EXISTS driver_sockets (
    node_id   TEXT    NOT NULL,
    driver_id TEXT    NOT NULL,
    sockets   INTEGER NOT NULL,
    closed_at BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (node_id, driver_id)
);
CREATE INDEX IF NOT EXISTS driver_sockets_driver ON driver_sockets (driver_id);

-- Every user's open sockets, cluster-wide (MAX_CONNECTIONS_PER_USER), in
-- the order they opened (a sequence: two sockets may open in one ms).
CREATE TABLE IF NOT EXISTS user_sockets (
    node_id TEXT      NOT NULL,
    sid     TEXT      NOT NULL,
    subject TEXT      NOT NULL,
    opened  BIGSERIAL NOT NULL,
    PRIMARY KEY (node_id, sid)
);
CREATE INDEX IF NOT EXISTS user_sockets_subject ON user_sockets (subject, opened);

-- Messages between nodes: NOTIFY carries the id (its payload is limited to
-- 8000 bytes), the body is here; kept a minute.
CREATE TABLE IF NOT EXISTS bus (
    id         BIGSERIAL PRIMARY KEY,
    body       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

-- Revoked tokens (by hash) and users (tokens issued at or before a second).
CREATE TABLE IF NOT EXISTS revocations (
    kind       TEXT   NOT NULL,
    key        TEXT   NOT NULL,
    at_secs    BIGINT NOT NULL,
    until_secs BIGINT NOT NULL,
    PRIMARY KEY (kind, key)
);
