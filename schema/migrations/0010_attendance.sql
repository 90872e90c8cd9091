-- Who attended a live session (issue 21: "my past sessions" on /replay, and a
-- learner replays a class they attended). One row per person and session,
-- written once when they open the session's WebSocket or SSE door (INSERT OR
-- IGNORE: reconnects change nothing), never per message.
CREATE TABLE attendance (
  run_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  org TEXT NOT NULL,
  joined_at INTEGER NOT NULL,
  PRIMARY KEY (run_id, user_id)
) WITHOUT ROWID;
CREATE INDEX attendance_by_user ON attendance (org, user_id, joined_at);
