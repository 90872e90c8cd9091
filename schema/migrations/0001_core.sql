-- Orgs, people, runs and their append-only events, checkpoints, audit, metrics.

CREATE TABLE orgs (
  id TEXT PRIMARY KEY,
  plan TEXT NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'enterprise')),
  created_at INTEGER NOT NULL
);

-- Personal data lives only here, keyed by the pseudonymous id events carry.
CREATE TABLE people (
  id TEXT PRIMARY KEY,
  org TEXT NOT NULL,
  display_name TEXT,
  email TEXT,
  erased_at INTEGER
);

CREATE TABLE runs (
  id TEXT PRIMARY KEY,
  org TEXT NOT NULL,
  kind TEXT NOT NULL,
  creator TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX runs_by_org ON runs (org, created_at);

CREATE TABLE events (
  run_id TEXT NOT NULL,
  seq INTEGER NOT NULL CHECK (seq >= 1),
  id TEXT NOT NULL,
  type TEXT NOT NULL,
  payload TEXT NOT NULL,
  timestamp INTEGER NOT NULL,
  author_id TEXT NOT NULL,
  org TEXT NOT NULL,
  PRIMARY KEY (run_id, seq),
  UNIQUE (run_id, id)
) WITHOUT ROWID;
CREATE INDEX events_by_time ON events (run_id, timestamp);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

CREATE TABLE checkpoints (
  run_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  state TEXT NOT NULL,
  hash TEXT NOT NULL,
  PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  org TEXT NOT NULL,
  at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  detail TEXT NOT NULL
);
CREATE INDEX audit_by_org ON audit (org, id);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- Fixed-window counters for per-org rates; one row per key.
CREATE TABLE rate_windows (
  key TEXT PRIMARY KEY,
  window_start INTEGER NOT NULL,
  count INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE metrics (
  name TEXT NOT NULL,
  labels TEXT NOT NULL,
  value REAL NOT NULL,
  PRIMARY KEY (name, labels)
) WITHOUT ROWID;
