-- Live sessions: the index the API needs (the truth lives in each session's
-- Durable Object and, through its outbox, in the session run's events).

CREATE TABLE sessions (
  id TEXT PRIMARY KEY,
  org TEXT NOT NULL,
  teacher_id TEXT NOT NULL,
  lesson_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  run_id TEXT NOT NULL,
  join_code TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'waiting',
  created_at INTEGER NOT NULL
);
-- Join codes are unique among sessions that have not ended.
CREATE UNIQUE INDEX sessions_open_code ON sessions (join_code) WHERE status != 'ended';
CREATE INDEX sessions_by_org ON sessions (org, status);

-- Development-only fault switches (e.g. make the outbox's D1 writes fail).
CREATE TABLE dev_faults (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
