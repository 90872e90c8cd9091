//! The R2 archive's formats: what "R2 alone rebuilds D1" is made of.
//!
//! # Layout in the `ARTIFACTS` bucket
//! - `archive/runs/{run_id}/segments/{sha256}.ndjson`: sealed, content-addressed
//!   segments of a run's events, one canonical JSON envelope (with `hash`) a line.
//!   Create-only: an existing key is never written again.
//! - `archive/runs/{run_id}/manifest.json`: [`RunManifest`], the run's segments in
//!   seq order, each with first and last seq and head hash. Written after its
//!   segments, so it only ever names segments that exist; always one contiguous chain.
//! - `archive/tables/{table}/{sha256}.ndjson`: a page of one table's rows (canonical
//!   JSON objects, in primary-key order).
//! - `archive/tables/manifest.json`: [`TablesManifest`], the latest snapshot of every
//!   table in [`TABLES`].
//!
//! Pure: encoding, decoding and the manifest rules; the edge does the I/O.

use crate::canonical::{sha256_hex, to_canonical_string};
use crate::chain::{self, Walk};
use crate::run::Event;
use serde_json::{Map, Value};

pub const FORMAT: u32 = 1;
/// Events per sealed segment at most.
pub const SEGMENT_EVENTS: usize = 1000;
/// Rows per table segment at most.
pub const TABLE_PAGE: usize = 500;

/// Tables that events and artifacts cannot rebuild, with the columns that
/// order them (their primary key). `checkpoints` (replay rebuilds them),
/// `rate_windows`, `dev_faults` and the archive's own bookkeeping are left out.
/// Order matters for restore only in that `runs` comes before events.
pub const TABLES: &[(&str, &str)] = &[
    ("orgs", "id"),
    ("people", "id"),
    ("runs", "id"),
    ("lessons", "id"),
    ("lesson_versions", "lesson_id, version"),
    ("assets", "sha256"),
    ("asset_owners", "sha256, org"),
    ("lesson_assets", "sha256, lesson_id, version"),
    ("listings", "id"),
    ("listing_decisions", "id"),
    ("reviews", "listing_id, learner_id"),
    ("market_generation", "id"),
    ("attempts", "id"),
    ("certificates", "id"),
    ("status_slots", "n"),
    ("sessions", "id"),
    ("attendance", "run_id, user_id"),
    ("ai_jobs", "id"),
    ("ai_results", "cache_key"),
    ("ai_dead_letters", "id"),
    ("audit", "id"),
    ("event_repairs", "id"),
    ("metrics", "name, labels"),
];

pub fn is_archived_table(name: &str) -> bool {
    TABLES.iter().any(|(t, _)| *t == name)
}

pub fn run_manifest_key(run_id: &str) -> String {
    format!("archive/runs/{run_id}/manifest.json")
}
pub fn segment_key(run_id: &str, address: &str) -> String {
    format!("archive/runs/{run_id}/segments/{address}.ndjson")
}
pub const TABLES_MANIFEST_KEY: &str = "archive/tables/manifest.json";
pub fn table_segment_key(table: &str, address: &str) -> String {
    format!("archive/tables/{table}/{address}.ndjson")
}

// Manifests are read and written through `serde_json::Value` by hand rather
// than with derived (de)serializers: each derive would add its own code to
// the worker's wasm for four small structs.

fn get_u64(v: &Value, k: &str) -> Option<u64> {
    v.get(k).and_then(Value::as_u64)
}
fn get_str(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

/// One sealed segment as a manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRef {
    /// sha256 of the segment's bytes (its key's last part).
    pub address: String,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The hash of its last event: the run's head once it is sealed.
    pub head_hash: String,
}

impl SegmentRef {
    pub fn to_value(&self) -> Value {
        crate::json!({"address": self.address, "first_seq": self.first_seq, "last_seq": self.last_seq, "head_hash": self.head_hash})
    }
    pub fn from_value(v: &Value) -> Option<Self> {
        Some(SegmentRef {
            address: get_str(v, "address")?,
            first_seq: get_u64(v, "first_seq")?,
            last_seq: get_u64(v, "last_seq")?,
            head_hash: get_str(v, "head_hash")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunManifest {
    pub format: u32,
    pub run_id: String,
    pub last_seq: u64,
    pub head_hash: String,
    pub segments: Vec<SegmentRef>,
}

impl RunManifest {
    pub fn to_value(&self) -> Value {
        crate::json!({
            "format": self.format,
            "run_id": self.run_id,
            "last_seq": self.last_seq,
            "head_hash": self.head_hash,
            "segments": self.segments.iter().map(SegmentRef::to_value).collect::<Vec<_>>(),
        })
    }

    pub fn from_value(v: &Value) -> Option<Self> {
        let segments = v.get("segments")?.as_array()?.iter().map(SegmentRef::from_value).collect::<Option<Vec<_>>>()?;
        Some(RunManifest {
            format: get_u64(v, "format")? as u32,
            run_id: get_str(v, "run_id")?,
            last_seq: get_u64(v, "last_seq")?,
            head_hash: get_str(v, "head_hash")?,
            segments,
        })
    }

    pub fn new(run_id: &str) -> Self {
        RunManifest {
            format: FORMAT,
            run_id: run_id.to_owned(),
            last_seq: 0,
            head_hash: chain::GENESIS.to_owned(),
            segments: Vec::new(),
        }
    }

    /// Where the next segment's chain starts.
    pub fn walk(&self) -> Walk {
        Walk { last_seq: self.last_seq, head: self.head_hash.clone() }
    }

    /// Add the segment that continues the chain; anything else is refused,
    /// so a manifest never lists a seq twice or skips one.
    pub fn push(&mut self, seg: SegmentRef) -> Result<(), String> {
        if seg.first_seq != self.last_seq + 1 || seg.last_seq < seg.first_seq {
            return Err(format!("segment {}..{} does not follow seq {}", seg.first_seq, seg.last_seq, self.last_seq));
        }
        self.last_seq = seg.last_seq;
        self.head_hash.clone_from(&seg.head_hash);
        self.segments.push(seg);
        Ok(())
    }

    /// Segments contiguous from seq 1, heads consistent.
    pub fn is_consistent(&self) -> bool {
        let mut next = 1;
        for s in &self.segments {
            if s.first_seq != next || s.last_seq < s.first_seq {
                return false;
            }
            next = s.last_seq + 1;
        }
        next == self.last_seq + 1
            && self.segments.last().map_or(self.head_hash == chain::GENESIS, |s| s.head_hash == self.head_hash)
    }

    /// The segment holding `seq`.
    pub fn segment_of(&self, seq: u64) -> Option<&SegmentRef> {
        self.segments.iter().find(|s| s.first_seq <= seq && seq <= s.last_seq)
    }
}

/// Seal consecutive, already chained events (checked from `from`) into a
/// segment's bytes and its reference. `Err((seq, why))` when the chain breaks:
/// a broken chain is never archived.
pub fn seal_segment(from: &Walk, events: &[Event]) -> Result<(Vec<u8>, SegmentRef), (u64, chain::Break)> {
    let mut walk = from.clone();
    walk.check(events)?;
    let mut bytes = Vec::new();
    for e in events {
        bytes.extend_from_slice(to_canonical_string(&e.to_value()).as_bytes());
        bytes.push(b'\n');
    }
    let seg = SegmentRef {
        address: sha256_hex(&bytes),
        first_seq: events.first().map_or(0, |e| e.seq),
        last_seq: walk.last_seq,
        head_hash: walk.head,
    };
    Ok((bytes, seg))
}

/// Read a segment back, checking its address and that it continues `from`
/// and ends as `seg` says.
pub fn open_segment(text: &str, seg: &SegmentRef, from: &Walk) -> Result<Vec<Event>, String> {
    if sha256_hex(text.as_bytes()) != seg.address {
        return Err(format!("segment {} does not match its address", seg.address));
    }
    let events: Vec<Event> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str::<Value>(l).ok().and_then(Event::from_value))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("segment {}: a line is not an event envelope", seg.address))?;
    let mut walk = from.clone();
    walk.check(&events).map_err(|(s, why)| format!("segment {} breaks at seq {s}: {}", seg.address, why.as_str()))?;
    if walk.last_seq != seg.last_seq || walk.head != seg.head_hash {
        return Err(format!("segment {} does not end where its manifest says", seg.address));
    }
    Ok(events)
}

/// A table's rows as one segment's bytes (canonical JSON lines) and address.
pub fn seal_rows(rows: &[Map<String, Value>]) -> (Vec<u8>, String) {
    let mut bytes = Vec::new();
    for r in rows {
        bytes.extend_from_slice(to_canonical_string(&Value::Object(r.clone())).as_bytes());
        bytes.push(b'\n');
    }
    let address = sha256_hex(&bytes);
    (bytes, address)
}

pub fn open_rows(text: &str, address: &str) -> Result<Vec<Map<String, Value>>, String> {
    if sha256_hex(text.as_bytes()) != address {
        return Err(format!("table segment {address} does not match its address"));
    }
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str::<Map<String, Value>>(l).map_err(|e| format!("table segment {address}: {e}")))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSnapshot {
    pub rows: u64,
    pub segments: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablesManifest {
    pub format: u32,
    /// When the snapshot was taken (ms since the epoch).
    pub at: i64,
    /// (table name, its snapshot), one per table. A Vec, not a map: another
    /// map type would add its own B-tree code to the worker's wasm.
    pub tables: Vec<(String, TableSnapshot)>,
}

impl TablesManifest {
    pub fn table(&self, name: &str) -> Option<&TableSnapshot> {
        self.tables.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    pub fn to_value(&self) -> Value {
        // Inserts, not `collect`: collecting into a map links a sort.
        let mut tables = Map::new();
        for (k, t) in &self.tables {
            tables.insert(k.clone(), crate::json!({"rows": t.rows, "segments": t.segments}));
        }
        crate::json!({"format": self.format, "at": self.at, "tables": tables})
    }

    pub fn from_value(v: &Value) -> Option<Self> {
        let mut tables = Vec::new();
        for (k, t) in v.get("tables")?.as_object()? {
            let segments = t
                .get("segments")?
                .as_array()?
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()?;
            tables.push((k.clone(), TableSnapshot { rows: get_u64(t, "rows")?, segments }));
        }
        Some(TablesManifest { format: get_u64(v, "format")? as u32, at: v.get("at")?.as_i64()?, tables })
    }
}

/// A column name safe to splice into SQL (restore builds its inserts from
/// archived rows' keys; only plain identifiers pass).
pub fn is_plain_column(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events(n: u64) -> Vec<Event> {
        let mut out: Vec<Event> = (1..=n)
            .map(|s| Event {
                id: format!("00000000-0000-4000-8000-{s:012}"),
                run_id: "r1".into(),
                seq: s,
                kind: "narration".into(),
                payload: json!({"text": format!("step {s}"), "w": 0.1 * s as f64 + 0.05}),
                timestamp: 1_700_000_000_000 + s as i64,
                author_id: "ada".into(),
                hash: String::new(),
            })
            .collect();
        chain::seal(chain::GENESIS, &mut out);
        out
    }

    #[test]
    fn segments_round_trip_and_manifests_stay_contiguous() {
        let all = events(25);
        let mut m = RunManifest::new("r1");
        let mut stored = Vec::new();
        for part in all.chunks(10) {
            let (bytes, seg) = seal_segment(&m.walk(), part).unwrap();
            stored.push((String::from_utf8(bytes).unwrap(), seg.clone()));
            m.push(seg).unwrap();
        }
        assert!(m.is_consistent());
        assert_eq!(RunManifest::from_value(&m.to_value()), Some(m.clone()));
        assert_eq!((m.last_seq, m.head_hash.as_str()), (25, all[24].hash.as_str()));
        let mut walk = Walk::default();
        let mut back = Vec::new();
        for (text, seg) in &stored {
            back.extend(open_segment(text, seg, &walk).unwrap());
            walk = Walk { last_seq: seg.last_seq, head: seg.head_hash.clone() };
        }
        assert_eq!(back, all);
        // The same events seal to the same address: a retry never makes a second segment.
        assert_eq!(seal_segment(&Walk::default(), &all[..10]).unwrap().1, m.segments[0]);
        // A segment that does not follow is refused.
        let (_, again) = seal_segment(&Walk::default(), &all[..10]).unwrap();
        assert!(m.push(again).is_err());
        assert_eq!(m.segment_of(12).map(|s| s.first_seq), Some(11));
    }

    #[test]
    fn a_broken_chain_is_never_sealed_and_a_changed_segment_never_opens() {
        let mut all = events(5);
        all[2].payload = json!({"text": "edited"});
        assert_eq!(seal_segment(&Walk::default(), &all).map(|_| ()), Err((3, chain::Break::HashMismatch)));
        let good = events(5);
        let (bytes, seg) = seal_segment(&Walk::default(), &good).unwrap();
        let text = String::from_utf8(bytes).unwrap().replace("step 2", "step 9");
        assert!(open_segment(&text, &seg, &Walk::default()).is_err());
    }

    #[test]
    fn table_rows_round_trip_canonically() {
        let rows: Vec<Map<String, Value>> = vec![
            json!({"id": "b", "n": 2, "score": 0.5, "t": null}).as_object().unwrap().clone(),
            json!({"id": "a", "n": 1, "score": 0.25, "t": "x"}).as_object().unwrap().clone(),
        ];
        let (bytes, address) = seal_rows(&rows);
        assert_eq!(open_rows(std::str::from_utf8(&bytes).unwrap(), &address).unwrap(), rows);
        assert!(open_rows("{}\n", &address).is_err());
        let tables = vec![("orgs".to_owned(), TableSnapshot { rows: 2, segments: vec![address.clone()] })];
        let tm = TablesManifest { format: FORMAT, at: 5, tables };
        assert_eq!(TablesManifest::from_value(&tm.to_value()), Some(tm));
        assert!(is_plain_column("learner_org") && !is_plain_column("x; DROP") && !is_plain_column("1a"));
        assert!(is_archived_table("certificates") && !is_archived_table("checkpoints"));
    }
}
