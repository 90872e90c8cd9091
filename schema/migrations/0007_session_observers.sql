-- Connected observers per session, kept current by each session's Durable
-- Object (through its outbox alarm), so /v1/metrics can sum them without
-- calling every live object.
ALTER TABLE sessions ADD COLUMN observers INTEGER NOT NULL DEFAULT 0;
