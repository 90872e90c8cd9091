-- Marketplace governance and reviews; AI jobs, their result cache and dead letters.

CREATE TABLE listing_decisions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  listing_id TEXT NOT NULL,
  actor TEXT NOT NULL,
  decision TEXT NOT NULL,
  from_status TEXT NOT NULL,
  to_status TEXT NOT NULL,
  reason TEXT NOT NULL,
  at INTEGER NOT NULL
);
CREATE INDEX listing_decisions_by_listing ON listing_decisions (listing_id, id);
CREATE TRIGGER listing_decisions_no_update BEFORE UPDATE ON listing_decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
CREATE TRIGGER listing_decisions_no_delete BEFORE DELETE ON listing_decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;

CREATE TABLE reviews (
  listing_id TEXT NOT NULL,
  learner_id TEXT NOT NULL,
  rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
  text TEXT NOT NULL,
  completed INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (listing_id, learner_id)
) WITHOUT ROWID;

-- Bumped in the same batch as every marketplace write; cache keys carry it.
CREATE TABLE market_generation (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  generation INTEGER NOT NULL
);
INSERT INTO market_generation (id, generation) VALUES (1, 1);

CREATE TABLE ai_jobs (
  id TEXT PRIMARY KEY,
  org TEXT NOT NULL,
  requester TEXT NOT NULL,
  kind TEXT NOT NULL,
  lesson_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  input TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  result TEXT,
  error TEXT,
  cache_key TEXT,
  cached INTEGER NOT NULL DEFAULT 0,
  provider TEXT NOT NULL,
  run_id TEXT,
  -- Set for a teacher's live explanation: the result goes back to the session.
  session_id TEXT,
  -- Development-only fault injection: fail this many attempts first.
  fail_first INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX ai_jobs_by_org ON ai_jobs (org, created_at);

CREATE TABLE ai_results (
  cache_key TEXT PRIMARY KEY,
  result TEXT NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE ai_dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL,
  body TEXT NOT NULL,
  at INTEGER NOT NULL
);
