-- Tamper evidence and recovery (issue 19).
--
-- Every event carries `hash`: sha256 over the previous event's hash followed by
-- the RFC 8785 form of the event (src/chain.rs). SQL cannot compute SHA-256, so
-- rows written before this migration keep a NULL hash until the worker fills
-- their chain: lazily on the run's next append, and for every run by the
-- archive pass (`scheduled`, or `POST /v1/ops/archive`). A run's NULL hashes
-- are always a prefix of it; verify reports any other NULL as `missing_hash`.
ALTER TABLE events ADD COLUMN hash TEXT;

-- Repairs: an operator's repair first records what it will write here (the
-- archived row's hash), then rewrites the event. The log stays append-only.
CREATE TABLE event_repairs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  hash TEXT NOT NULL,
  at INTEGER NOT NULL,
  actor TEXT NOT NULL
);
CREATE INDEX event_repairs_by_row ON event_repairs (run_id, seq, hash);

-- Events stay append-only. The two updates allowed: filling a legacy row's
-- missing hash (nothing else changes), and a repair that restores the exact
-- archived row whose hash a repair record names.
DROP TRIGGER events_no_update;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
WHEN NOT (
  (OLD.hash IS NULL AND NEW.hash IS NOT NULL AND NEW.run_id = OLD.run_id AND NEW.seq = OLD.seq
   AND NEW.id = OLD.id AND NEW.type = OLD.type AND NEW.payload = OLD.payload
   AND NEW.timestamp = OLD.timestamp AND NEW.author_id = OLD.author_id AND NEW.org = OLD.org)
  OR EXISTS (SELECT 1 FROM event_repairs r
             WHERE r.run_id = OLD.run_id AND r.seq = OLD.seq AND r.hash = NEW.hash
               AND NEW.run_id = OLD.run_id AND NEW.seq = OLD.seq)
)
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

-- What the archive pass has sealed into R2, per run (a cache of the R2
-- manifests, so a pass reads only runs that changed). R2 stays the truth.
CREATE TABLE archive_runs (
  run_id TEXT PRIMARY KEY,
  last_seq INTEGER NOT NULL,
  head_hash TEXT NOT NULL,
  at INTEGER NOT NULL
) WITHOUT ROWID;

-- Runs whose legacy rows still lack a hash; emptied by the archive pass.
CREATE TABLE chain_backfill (
  run_id TEXT PRIMARY KEY
) WITHOUT ROWID;
INSERT OR IGNORE INTO chain_backfill (run_id) SELECT DISTINCT run_id FROM events;
