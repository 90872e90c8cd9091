-- The learner's own org on attempts and certificates. `org` is the lesson's
-- org (a learner may take another org's public lesson), so a user id alone
-- never identified the learner: the same id can exist in two orgs.
ALTER TABLE attempts ADD COLUMN learner_org TEXT;
UPDATE attempts SET learner_org = org WHERE learner_org IS NULL;
ALTER TABLE certificates ADD COLUMN learner_org TEXT;
UPDATE certificates SET learner_org = org WHERE learner_org IS NULL;

-- Which orgs uploaded an asset (the same bytes may be uploaded by several:
-- `assets` keeps one row per sha256 for type and size).
CREATE TABLE asset_owners (
  sha256 TEXT NOT NULL,
  org TEXT NOT NULL,
  uploader TEXT NOT NULL,
  size INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (sha256, org)
) WITHOUT ROWID;
CREATE INDEX asset_owners_by_org ON asset_owners (org);
INSERT OR IGNORE INTO asset_owners (sha256, org, uploader, size, created_at)
  SELECT sha256, org, uploader, size, created_at FROM assets;

-- Assets referenced by a lesson version's timeline (element `asset` fields):
-- a version published publicly makes its media readable without a token.
CREATE TABLE lesson_assets (
  sha256 TEXT NOT NULL,
  lesson_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  PRIMARY KEY (sha256, lesson_id, version)
) WITHOUT ROWID;
