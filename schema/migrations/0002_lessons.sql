-- Lessons: an index over immutable artifacts in R2; media assets; listings.

CREATE TABLE lessons (
  id TEXT PRIMARY KEY,
  org TEXT NOT NULL,
  author_id TEXT NOT NULL,
  title TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX lessons_by_org ON lessons (org, created_at);

CREATE TABLE lesson_versions (
  lesson_id TEXT NOT NULL,
  version INTEGER NOT NULL CHECK (version >= 1),
  sha256 TEXT NOT NULL,
  r2_key TEXT NOT NULL,
  title TEXT NOT NULL,
  summary TEXT NOT NULL,
  tags TEXT NOT NULL,
  step_count INTEGER NOT NULL,
  quiz_count INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (lesson_id, version)
) WITHOUT ROWID;
CREATE TRIGGER lesson_versions_no_update BEFORE UPDATE ON lesson_versions
BEGIN SELECT RAISE(ABORT, 'lesson versions are immutable'); END;
CREATE TRIGGER lesson_versions_no_delete BEFORE DELETE ON lesson_versions
BEGIN SELECT RAISE(ABORT, 'lesson versions are immutable'); END;

CREATE TABLE assets (
  sha256 TEXT PRIMARY KEY,
  org TEXT NOT NULL,
  uploader TEXT NOT NULL,
  content_type TEXT NOT NULL,
  size INTEGER NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX assets_by_org ON assets (org);

CREATE TABLE listings (
  id TEXT PRIMARY KEY,
  org TEXT NOT NULL,
  lesson_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  author_id TEXT NOT NULL,
  title TEXT NOT NULL,
  summary TEXT NOT NULL,
  tags TEXT NOT NULL,
  price_cents INTEGER,
  visibility TEXT NOT NULL CHECK (visibility IN ('public', 'org')),
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  UNIQUE (lesson_id, version)
);
CREATE INDEX listings_by_status ON listings (status, created_at);
