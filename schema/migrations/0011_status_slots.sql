-- Status-list slots, handed out by one atomic statement (issue 17's class
-- load: concurrent submits read the same "latest index" and most of them lost
-- the race five times over). Slot n is list 1 + n / 131072, index n % 131072:
-- the same order the old read-then-insert allocation filled them in.
CREATE TABLE status_slots (
  n INTEGER PRIMARY KEY,
  certificate_id TEXT NOT NULL UNIQUE
);
INSERT INTO status_slots (n, certificate_id)
  SELECT (CAST(status_list AS INTEGER) - 1) * 131072 + status_index, id FROM certificates;
