-- Attempts (each is a run of attempt.* events) and the certificates they earn.

CREATE TABLE attempts (
  id TEXT PRIMARY KEY,
  org TEXT NOT NULL,
  learner_id TEXT NOT NULL,
  lesson_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  run_id TEXT NOT NULL,
  submitted INTEGER NOT NULL DEFAULT 0,
  score REAL,
  passed INTEGER,
  certificate_id TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX attempts_by_lesson ON attempts (lesson_id, version);
CREATE INDEX attempts_by_learner ON attempts (learner_id);

CREATE TABLE certificates (
  id TEXT PRIMARY KEY,
  org TEXT NOT NULL,
  learner_id TEXT NOT NULL,
  lesson_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  attempt_id TEXT NOT NULL UNIQUE,
  status_list TEXT NOT NULL,
  status_index INTEGER NOT NULL,
  credential TEXT NOT NULL,
  issued_at INTEGER NOT NULL,
  revoked_at INTEGER,
  UNIQUE (status_list, status_index)
);
CREATE INDEX certificates_by_learner ON certificates (learner_id);
CREATE INDEX certificates_by_lesson ON certificates (lesson_id);
