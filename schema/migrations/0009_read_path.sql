-- The read path scales with the page, not the marketplace (issue 16):
-- rating count and sum kept on the listing by the review write (same batch),
-- the sort=rating key as an indexed column, tags in an indexed table, and
-- full-text search through an FTS5 trigram index (substring semantics, the
-- same as the earlier in-worker search).
ALTER TABLE listings ADD COLUMN rating_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE listings ADD COLUMN rating_sum INTEGER NOT NULL DEFAULT 0;
-- Bayesian average in micro-stars (crate::marketplace::rank_score): prior of
-- 5 ratings of 3.5.
ALTER TABLE listings ADD COLUMN rank INTEGER NOT NULL DEFAULT 3500000;

UPDATE listings SET
  rating_count = (SELECT COUNT(*) FROM reviews r WHERE r.listing_id = listings.id),
  rating_sum = (SELECT COALESCE(SUM(rating), 0) FROM reviews r WHERE r.listing_id = listings.id);
UPDATE listings SET rank = CAST(ROUND(((17.5 + rating_sum) / (5.0 + rating_count)) * 1000000.0) AS INTEGER);

CREATE INDEX listings_by_rank ON listings (status, rank DESC, id);
CREATE INDEX listings_by_new ON listings (status, created_at DESC, id);

-- Tags, lower-cased, one row per (tag, listing); kept by triggers.
CREATE TABLE listing_tags (
  tag TEXT NOT NULL,
  listing_id TEXT NOT NULL,
  PRIMARY KEY (tag, listing_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO listing_tags (tag, listing_id)
  SELECT lower(j.value), l.id FROM listings l, json_each(l.tags) j WHERE json_valid(l.tags);

CREATE VIRTUAL TABLE listings_fts USING fts5(
  title, summary, tags, content = 'listings', content_rowid = 'rowid', tokenize = 'trigram'
);
INSERT INTO listings_fts (rowid, title, summary, tags) SELECT rowid, title, summary, tags FROM listings;

CREATE TRIGGER listings_index_insert AFTER INSERT ON listings BEGIN
  INSERT INTO listings_fts (rowid, title, summary, tags) VALUES (NEW.rowid, NEW.title, NEW.summary, NEW.tags);
  INSERT OR IGNORE INTO listing_tags (tag, listing_id)
    SELECT lower(j.value), NEW.id FROM json_each(CASE WHEN json_valid(NEW.tags) THEN NEW.tags ELSE '[]' END) j;
END;
CREATE TRIGGER listings_index_update AFTER UPDATE OF title, summary, tags ON listings BEGIN
  INSERT INTO listings_fts (listings_fts, rowid, title, summary, tags) VALUES ('delete', OLD.rowid, OLD.title, OLD.summary, OLD.tags);
  INSERT INTO listings_fts (rowid, title, summary, tags) VALUES (NEW.rowid, NEW.title, NEW.summary, NEW.tags);
  DELETE FROM listing_tags WHERE listing_id = OLD.id;
  INSERT OR IGNORE INTO listing_tags (tag, listing_id)
    SELECT lower(j.value), NEW.id FROM json_each(CASE WHEN json_valid(NEW.tags) THEN NEW.tags ELSE '[]' END) j;
END;
CREATE TRIGGER listings_index_delete AFTER DELETE ON listings BEGIN
  INSERT INTO listings_fts (listings_fts, rowid, title, summary, tags) VALUES ('delete', OLD.rowid, OLD.title, OLD.summary, OLD.tags);
  DELETE FROM listing_tags WHERE listing_id = OLD.id;
END;
