//! Marketplace core: the listing governance state machine, request
//! validation, trust signals, search with stable cursor paging, and the
//! generation-stamped KV cache keys. Pure: no I/O, no clock (`now_ms` is a
//! parameter); the edge loads rows from D1, calls in here and persists.

use crate::base64url;
use crate::canonical::sha256_hex;
use crate::error::{AppError, AppResult};
use crate::identity::{is_valid_id, Role};
use crate::policy::{self, Action, Scope};
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn field(message: impl Into<String>) -> AppError {
    AppError::bad_request("invalid_field", message)
}
fn query_err(message: impl Into<String>) -> AppError {
    AppError::bad_request("invalid_query", message)
}

// ---------------------------------------------------------------- governance

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListingStatus {
    Submitted,
    InReview,
    Approved,
    Rejected,
    Published,
    Suspended,
}

impl ListingStatus {
    pub const ALL: [ListingStatus; 6] = [
        ListingStatus::Submitted,
        ListingStatus::InReview,
        ListingStatus::Approved,
        ListingStatus::Rejected,
        ListingStatus::Published,
        ListingStatus::Suspended,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ListingStatus::Submitted => "submitted",
            ListingStatus::InReview => "in_review",
            ListingStatus::Approved => "approved",
            ListingStatus::Rejected => "rejected",
            ListingStatus::Published => "published",
            ListingStatus::Suspended => "suspended",
        }
    }
    pub fn parse(s: &str) -> Option<ListingStatus> {
        ListingStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
    /// Belongs in the reviewer queue (awaiting a review decision).
    pub fn awaiting_review(self) -> bool {
        matches!(self, ListingStatus::Submitted | ListingStatus::InReview)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
    Publish,
    Suspend,
    Reinstate,
    StartReview,
    Resubmit,
}

impl Decision {
    pub const ALL: [Decision; 7] = [
        Decision::Approve,
        Decision::Reject,
        Decision::Publish,
        Decision::Suspend,
        Decision::Reinstate,
        Decision::StartReview,
        Decision::Resubmit,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
            Decision::Publish => "publish",
            Decision::Suspend => "suspend",
            Decision::Reinstate => "reinstate",
            Decision::StartReview => "start_review",
            Decision::Resubmit => "resubmit",
        }
    }
    /// 400 `invalid_field` naming `decision` for anything unknown.
    pub fn parse(s: &str) -> AppResult<Decision> {
        Decision::ALL.into_iter().find(|d| d.as_str() == s).ok_or_else(|| {
            field(format!(
                "decision: unknown decision {s:?} (approve, reject, publish, suspend, reinstate, start_review, resubmit)"
            ))
        })
    }
    /// Rejections and suspensions must say why: the author reads it.
    pub fn requires_reason(self) -> bool {
        matches!(self, Decision::Reject | Decision::Suspend)
    }
    /// Which policy action grants this decision.
    fn action(self) -> Action {
        match self {
            Decision::Approve | Decision::Reject | Decision::StartReview => Action::ListingReview,
            Decision::Publish | Decision::Suspend | Decision::Reinstate => Action::ListingGovern,
            Decision::Resubmit => Action::ListingSubmit,
        }
    }
    /// The transition table: `Some(next)` when `self` is legal from `from`.
    pub fn next(self, from: ListingStatus) -> Option<ListingStatus> {
        use ListingStatus::*;
        match (self, from) {
            (Decision::StartReview, Submitted) => Some(InReview),
            (Decision::Approve, Submitted | InReview) => Some(Approved),
            (Decision::Reject, Submitted | InReview) => Some(Rejected),
            (Decision::Publish, Approved) => Some(Published),
            (Decision::Suspend, Published) => Some(Suspended),
            (Decision::Reinstate, Suspended) => Some(Published),
            (Decision::Resubmit, Rejected) => Some(Submitted),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    Public,
    Org,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Actor {
    pub user_id: String,
    pub roles: Vec<Role>,
    pub org: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListingFacts {
    pub author_id: String,
    pub org: String,
    pub visibility: Visibility,
}

/// Decide on a listing; returns the next status. Checks, in order:
/// 1. org: only members of the listing's org decide on it, whatever its
///    visibility (an org governs its own catalogue). Others get **404**
///    `not_found`, as `policy::authorize` answers for foreign resources, so a
///    not-yet-published listing's existence does not leak.
/// 2. role (the `policy` matrix): reviewers and governors `approve`, `reject`,
///    `start_review`; governors `publish`, `suspend`, `reinstate`; the listing's
///    author (with the author role) `resubmit`s. Otherwise **403** `forbidden`.
/// 3. conflict of interest: nobody, governors included, takes a review
///    decision (approve, reject, start_review) on their own listing: **403**
///    `own_listing`. Publishing, suspending and reinstating one's own
///    already-reviewed listing is allowed.
/// 4. the transition table: **409** `illegal_transition` naming the status.
///
/// The reason is validated earlier by [`DecisionRequest::parse`].
pub fn decide(
    status: ListingStatus,
    decision: Decision,
    actor: &Actor,
    listing: &ListingFacts,
) -> AppResult<ListingStatus> {
    let scope = Scope { same_org: actor.org == listing.org, owner: actor.user_id == listing.author_id };
    match policy::decide(&actor.roles, decision.action(), scope) {
        policy::Decision::Allow => {}
        policy::Decision::DenyForeign => return Err(AppError::not_found("listing")),
        policy::Decision::DenyRole(reason) => {
            let reason = if decision == Decision::Resubmit { "only the listing's author resubmits it" } else { reason };
            return Err(AppError::forbidden(reason));
        }
    }
    if scope.owner && decision.action() == Action::ListingReview {
        return Err(AppError::rule(403, "own_listing", "reviewers never decide on their own listing"));
    }
    decision.next(status).ok_or_else(|| {
        AppError::conflict(
            "illegal_transition",
            format!("cannot {} a listing that is {}", decision.as_str(), status.as_str()),
        )
    })
}

/// The decisions this actor may take now (for the web app's buttons).
pub fn available_decisions(status: ListingStatus, actor: &Actor, listing: &ListingFacts) -> Vec<Decision> {
    Decision::ALL.into_iter().filter(|d| decide(status, *d, actor, listing).is_ok()).collect()
}

pub const MAX_REASON_CHARS: usize = 2000;

/// Body of `POST .../decisions`: `{"decision", "reason"?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRequest {
    pub decision: Decision,
    /// Trimmed; `None` when absent or blank.
    pub reason: Option<String>,
}

impl DecisionRequest {
    /// 400 naming `decision` / `reason`; 422 `reason_required` for a reject or
    /// suspend without a reason.
    pub fn parse(body: &Value) -> AppResult<DecisionRequest> {
        let decision = match body.get("decision") {
            Some(Value::String(s)) => Decision::parse(s)?,
            _ => return Err(field("decision: required string")),
        };
        let reason = match body.get("reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.chars().count() > MAX_REASON_CHARS => {
                return Err(field(format!("reason: at most {MAX_REASON_CHARS} characters")))
            }
            Some(Value::String(s)) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
            Some(_) => return Err(field("reason: must be a string")),
        };
        if reason.is_none() && decision.requires_reason() {
            return Err(AppError::unprocessable(
                "reason_required",
                format!("reason: required to {} a listing", decision.as_str()),
            ));
        }
        Ok(DecisionRequest { decision, reason })
    }
}

/// What a decision records (a row of the listing's history and of the audit log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListingDecided {
    pub listing_id: String,
    pub decision: Decision,
    pub from: ListingStatus,
    pub to: ListingStatus,
    pub actor_id: String,
    pub reason: Option<String>,
    pub at_ms: i64,
}

/// `decide` returning the record to persist and audit (cqrs style: the command
/// yields the event; the adapter writes it with the status in one D1 batch).
pub fn handle_decision(
    listing_id: &str,
    status: ListingStatus,
    request: &DecisionRequest,
    actor: &Actor,
    listing: &ListingFacts,
    now_ms: i64,
) -> AppResult<ListingDecided> {
    let to = decide(status, request.decision, actor, listing)?;
    Ok(ListingDecided {
        listing_id: listing_id.to_string(),
        decision: request.decision,
        from: status,
        to,
        actor_id: actor.user_id.clone(),
        reason: request.reason.clone(),
        at_ms: now_ms,
    })
}

// ---------------------------------------------------------------- validation

pub const MAX_PRICE_CENTS: u64 = 1_000_000;
pub const MAX_REVIEW_CHARS: usize = 5000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub lesson_id: String,
    pub version: u32,
    pub price_cents: Option<u64>,
    pub visibility: Visibility,
}

pub fn validate_submission(body: &Value) -> AppResult<Submission> {
    if !body.is_object() {
        return Err(field("body: must be a JSON object"));
    }
    let lesson_id = match body.get("lesson_id") {
        Some(Value::String(s)) if is_valid_id(s) => s.clone(),
        _ => return Err(field("lesson_id: required id of [A-Za-z0-9._-], at most 64 characters")),
    };
    let version = body
        .get("version")
        .and_then(Value::as_u64)
        .filter(|v| *v >= 1)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| field("version: required positive integer"))?;
    let price_cents = match body.get("price_cents") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|p| *p <= MAX_PRICE_CENTS)
                .ok_or_else(|| field(format!("price_cents: integer from 0 to {MAX_PRICE_CENTS}")))?,
        ),
    };
    let visibility = match body.get("visibility").and_then(Value::as_str) {
        Some("public") => Visibility::Public,
        Some("org") => Visibility::Org,
        _ => return Err(field("visibility: required, \"public\" or \"org\"")),
    };
    Ok(Submission { lesson_id, version, price_cents, visibility })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub rating: u8,
    pub text: String,
}

/// `{"rating": 1..5, "text"}`; a missing or null `text` is an empty review text.
pub fn validate_review(body: &Value) -> AppResult<Review> {
    if !body.is_object() {
        return Err(field("body: must be a JSON object"));
    }
    let rating = body
        .get("rating")
        .and_then(Value::as_u64)
        .filter(|r| (1..=5).contains(r))
        .and_then(|r| u8::try_from(r).ok())
        .ok_or_else(|| field("rating: required integer from 1 to 5"))?;
    let text = match body.get("text") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.chars().count() <= MAX_REVIEW_CHARS => s.clone(),
        Some(Value::String(_)) => return Err(field(format!("text: at most {MAX_REVIEW_CHARS} characters"))),
        Some(_) => return Err(field("text: must be a string")),
    };
    Ok(Review { rating, text })
}

// ---------------------------------------------------------------- trust signals

/// Bayesian prior: a listing starts as if it had `PRIOR_WEIGHT` ratings of
/// `PRIOR_MEAN`, so one 5-star review does not outrank fifty 4.8s.
pub const PRIOR_MEAN: f64 = 3.5;
pub const PRIOR_WEIGHT: f64 = 5.0;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrustInput {
    /// Stored review ratings; anything outside 1..=5 is ignored.
    pub ratings: Vec<u8>,
    /// The ratings (a subset of `ratings`) from learners who completed the lesson.
    pub completed_ratings: Vec<u8>,
    pub attempts: u64,
    /// Attempts that were submitted (the learner finished the lesson).
    pub completed_attempts: u64,
    pub certificate_attempts_passed: u64,
    pub author_verified: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustSignals {
    /// Plain mean; `null` with no ratings.
    pub rating_avg: Option<f64>,
    /// `(C*m + sum) / (C + n)`, m = 3.5, C = 5; 3.5 with no ratings.
    pub rating_bayesian: f64,
    pub rating_count: u64,
    /// How many of the ratings come from learners who completed the lesson.
    pub completed_rating_count: u64,
    /// completed / attempts; `null` with no attempts.
    pub completion_rate: Option<f64>,
    /// passed / completed; `null` with no completed attempts.
    pub certificate_pass_rate: Option<f64>,
    pub author_verified: bool,
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    // Clamped: counts come from separate queries and may race by one.
    (den > 0).then(|| (num.min(den) as f64) / (den as f64))
}

pub fn trust_signals(input: &TrustInput) -> TrustSignals {
    let valid = input.ratings.iter().filter(|r| (1..=5).contains(*r));
    let (n, sum) = valid.fold((0u64, 0u64), |(n, s), r| (n + 1, s + u64::from(*r)));
    TrustSignals {
        rating_avg: (n > 0).then(|| sum as f64 / n as f64),
        rating_bayesian: (PRIOR_WEIGHT * PRIOR_MEAN + sum as f64) / (PRIOR_WEIGHT + n as f64),
        rating_count: n,
        // Clamped: the subset is counted from the same rows, but never exceeds the whole.
        completed_rating_count: (input.completed_ratings.iter().filter(|r| (1..=5).contains(*r)).count() as u64).min(n),
        completion_rate: ratio(input.completed_attempts, input.attempts),
        certificate_pass_rate: ratio(input.certificate_attempts_passed, input.completed_attempts),
        author_verified: input.author_verified,
    }
}

/// The plain mean from a listing's kept tallies (count, sum); `None` with no ratings.
pub fn mean_rating(count: u64, sum: u64) -> Option<f64> {
    (count > 0).then(|| sum as f64 / count as f64)
}

impl TrustSignals {
    pub fn rank_score(&self) -> i64 {
        rank_score(self.rating_bayesian)
    }
}

/// The sort=rating key: the Bayesian average in micro-stars. An integer so the
/// cursor round-trips exactly (no float formatting in cursors); NaN ranks 0.
pub fn rank_score(rating_bayesian: f64) -> i64 {
    if rating_bayesian.is_finite() {
        (rating_bayesian.clamp(0.0, 5.0) * 1_000_000.0).round() as i64
    } else {
        0
    }
}

// ---------------------------------------------------------------- search

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListingSummary {
    pub listing_id: String,
    pub lesson_id: String,
    pub version: u32,
    pub title: String,
    pub summary: String,
    pub tags: Vec<String>,
    pub status: ListingStatus,
    pub visibility: Visibility,
    pub org: String,
    pub created_at_ms: i64,
    pub rating_bayesian: f64,
    /// Plain mean; `null` with no ratings (agrees with the detail's trust signals).
    #[serde(default)]
    pub rating_avg: Option<f64>,
    pub rating_count: u64,
    pub price_cents: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    #[default]
    Rating,
    New,
}

impl Sort {
    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Rating => "rating",
            Sort::New => "new",
        }
    }
}

/// A position in a sorted listing: the last item's sort key and id. Both
/// orders are "primary descending, then listing_id ascending", a total order,
/// so "everything strictly after the cursor" never repeats nor skips, even
/// with ties or rows deleted between pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub sort: Sort,
    pub primary: i64,
    pub listing_id: String,
}

impl Cursor {
    fn of(sort: Sort, item: &ListingSummary) -> Cursor {
        Cursor { sort, primary: primary_key(sort, item), listing_id: item.listing_id.clone() }
    }
    /// Opaque to clients: base64url of `{sort}:{primary}:{listing_id}`.
    pub fn encode(&self) -> String {
        base64url::encode(format!("{}:{}:{}", self.sort.as_str(), self.primary, self.listing_id).as_bytes())
    }
    pub fn decode(s: &str) -> Option<Cursor> {
        let raw = String::from_utf8(base64url::decode(s)?).ok()?;
        let mut parts = raw.splitn(3, ':');
        let sort = match parts.next()? {
            "rating" => Sort::Rating,
            "new" => Sort::New,
            _ => return None,
        };
        let primary = parts.next()?.parse().ok()?;
        let listing_id = parts.next()?.to_string();
        Some(Cursor { sort, primary, listing_id })
    }
    /// Whether `item` comes strictly after this cursor.
    fn before(&self, item: &ListingSummary) -> bool {
        let p = primary_key(self.sort, item);
        p < self.primary || (p == self.primary && item.listing_id.as_str() > self.listing_id.as_str())
    }
}

fn primary_key(sort: Sort, item: &ListingSummary) -> i64 {
    match sort {
        Sort::Rating => rank_score(item.rating_bayesian),
        Sort::New => item.created_at_ms,
    }
}

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 50;
const MAX_Q_CHARS: usize = 200;
const MAX_TAG_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    /// Lower-cased, whitespace collapsed; `None` when blank.
    pub q: Option<String>,
    /// Lower-cased; matched case-insensitively against whole tags.
    pub tag: Option<String>,
    pub sort: Sort,
    pub cursor: Option<Cursor>,
    /// 1..=50.
    pub limit: u32,
}

impl Query {
    /// From raw query-string values. 400 `invalid_query` naming `q`, `tag`,
    /// `sort`, `cursor` or `limit`. Normalising here makes equal searches share
    /// one cache key.
    pub fn parse(
        q: Option<&str>,
        tag: Option<&str>,
        sort: Option<&str>,
        cursor: Option<&str>,
        limit: Option<&str>,
    ) -> AppResult<Query> {
        let q = q.map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()).filter(|s| !s.is_empty());
        if q.as_ref().is_some_and(|s| s.chars().count() > MAX_Q_CHARS) {
            return Err(query_err(format!("q: at most {MAX_Q_CHARS} characters")));
        }
        let tag = tag.map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty());
        if tag.as_ref().is_some_and(|s| s.chars().count() > MAX_TAG_CHARS) {
            return Err(query_err(format!("tag: at most {MAX_TAG_CHARS} characters")));
        }
        let sort = match sort.filter(|s| !s.is_empty()) {
            None | Some("rating") => Sort::Rating,
            Some("new") => Sort::New,
            Some(other) => return Err(query_err(format!("sort: must be rating or new, not {other:?}"))),
        };
        let cursor = match cursor.filter(|s| !s.is_empty()) {
            None => None,
            Some(raw) => match Cursor::decode(raw) {
                Some(c) if c.sort == sort => Some(c),
                Some(_) => return Err(query_err("cursor: belongs to a different sort order")),
                None => return Err(query_err("cursor: not a cursor returned by this API")),
            },
        };
        let limit = match limit.filter(|s| !s.is_empty()) {
            None => DEFAULT_LIMIT,
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| query_err(format!("limit: integer from 1 to {MAX_LIMIT}")))?,
        };
        Ok(Query { q, tag, sort, cursor, limit })
    }
}

/// How the adapter searches `q` in SQL: terms of three characters or more
/// go to the FTS5 trigram index as one quoted phrase each (all must match);
/// shorter ones, which a trigram index cannot look up, are matched as
/// substrings of the rows the rest of the query already narrowed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TextSearch {
    pub fts_match: Option<String>,
    pub short_terms: Vec<String>,
}

impl Query {
    pub fn text_search(&self) -> TextSearch {
        let mut out = TextSearch::default();
        let mut phrases = Vec::new();
        for term in self.q.iter().flat_map(|q| q.split_whitespace()) {
            if term.chars().count() >= 3 {
                // FTS5 string syntax: a double quote inside is doubled.
                phrases.push(format!("\"{}\"", term.replace('"', "\"\"")));
            } else if !out.short_terms.iter().any(|t| t == term) {
                out.short_terms.push(term.to_owned());
            }
        }
        if !phrases.is_empty() {
            out.fts_match = Some(phrases.join(" AND "));
        }
        out
    }
}

/// Where a search page starts reading. A filter that matches few listings
/// drives (its matches are read, then sorted); otherwise the sort order's
/// index drives and each listing is checked against the filters until the
/// page is full. Either way a query reads about `few` + page / selectivity
/// rows, bounded by the page, not by the size of the marketplace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchDrive {
    /// Nothing can match: answer an empty page without reading more.
    Empty,
    Text,
    Tag,
    SortIndex,
}

/// `text_matches` / `tag_matches`: how many listings the filter matches,
/// counted up to `few + 1` (`None` when the query has no such filter).
pub fn search_drive(text_matches: Option<u64>, tag_matches: Option<u64>, few: u64) -> SearchDrive {
    match (text_matches, tag_matches) {
        (Some(0), _) | (_, Some(0)) => SearchDrive::Empty,
        (Some(t), Some(g)) if t <= few || g <= few => {
            if t <= g {
                SearchDrive::Text
            } else {
                SearchDrive::Tag
            }
        }
        (Some(t), None) if t <= few => SearchDrive::Text,
        (None, Some(g)) if g <= few => SearchDrive::Tag,
        _ => SearchDrive::SortIndex,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    pub items: Vec<ListingSummary>,
    pub next_cursor: Option<String>,
}

/// Whether a viewer (`None` = anonymous) may see this listing at all.
pub fn visible_to(item: &ListingSummary, viewer_org: Option<&str>) -> bool {
    item.status == ListingStatus::Published
        && (item.visibility == Visibility::Public || viewer_org == Some(item.org.as_str()))
}

fn matches(item: &ListingSummary, query: &Query) -> bool {
    if let Some(tag) = &query.tag {
        if !item.tags.iter().any(|t| t.to_lowercase() == *tag) {
            return false;
        }
    }
    let Some(q) = &query.q else { return true };
    // Joined with '\n': terms hold no whitespace, so none matches across fields.
    let hay = format!("{}\n{}\n{}", item.title, item.summary, item.tags.join("\n")).to_lowercase();
    q.to_lowercase().split_whitespace().all(|term| hay.contains(term))
}

/// One page of the published listings `viewer_org` may see, filtered and
/// sorted (see [`Cursor`]). `items` may be any candidate rows (listing_id
/// unique): status and visibility are filtered here too, so the adapter's SQL
/// may over-fetch but must not under-fetch.
pub fn search(items: &[ListingSummary], query: &Query, viewer_org: Option<&str>) -> Page {
    let mut hits: Vec<&ListingSummary> = items
        .iter()
        .filter(|i| visible_to(i, viewer_org) && matches(i, query))
        .filter(|i| query.cursor.as_ref().is_none_or(|c| c.before(i)))
        .collect();
    let sort = query.sort;
    crate::order::sort_by(&mut hits, |a, b| {
        primary_key(sort, b).cmp(&primary_key(sort, a)).then_with(|| a.listing_id.cmp(&b.listing_id))
    });
    let limit = query.limit.clamp(1, MAX_LIMIT) as usize;
    let more = hits.len() > limit;
    hits.truncate(limit);
    let next_cursor = if more { hits.last().map(|last| Cursor::of(sort, last).encode()) } else { None };
    Page { items: hits.into_iter().cloned().collect(), next_cursor }
}

// ---------------------------------------------------------------- cache keys
//
// Keys name what a cached page depends on besides the marketplace's
// generation stamp, which the edge (src/edge/edge_cache.rs) keeps in KV,
// replaces after every marketplace write has committed in D1, and prefixes to
// every key: after a write, readers ask for keys never filled, miss, and
// rebuild. Old stamps are never read again and expire.

const KEY_PREFIX: &str = "mkt:v1";

/// The cache audience of a viewer: everyone in an org sees the same pages.
pub fn viewer_scope(viewer_org: Option<&str>) -> String {
    match viewer_org {
        Some(org) => format!("org:{org}"),
        None => "public".to_string(),
    }
}

/// A key segment: kept readable when short and safe, else `~` + sha256 (`~`
/// is never in a readable one, so the two forms cannot collide); every key
/// stays far below KV's 512-byte limit.
fn segment(s: &str) -> String {
    if s.len() <= 80 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
        s.to_string()
    } else {
        format!("~{}", sha256_hex(s.as_bytes()))
    }
}

/// `mkt:v1:list:{scope}:{sha256 of the normalised query}` (the edge adds the
/// marketplace's generation stamp).
pub fn list_cache_key(viewer_scope: &str, query: &Query) -> String {
    // A JSON array is an injective encoding of the fields.
    let canonical =
        crate::json!(
            [query.sort.as_str(), query.limit, query.tag, query.q, query.cursor.as_ref().map(Cursor::encode),]
        )
        .to_string();
    format!("{KEY_PREFIX}:list:{}:{}", segment(viewer_scope), sha256_hex(canonical.as_bytes()))
}

/// `mkt:v1:detail:{listing_id}:{scope}`.
pub fn detail_cache_key(listing_id: &str, viewer_scope: &str) -> String {
    format!("{KEY_PREFIX}:detail:{}:{}", segment(listing_id), segment(viewer_scope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use ListingStatus::*;

    fn actor(id: &str, org: &str, roles: &[Role]) -> Actor {
        Actor { user_id: id.into(), roles: roles.to_vec(), org: org.into() }
    }
    fn facts(author: &str) -> ListingFacts {
        ListingFacts { author_id: author.into(), org: "o1".into(), visibility: Visibility::Public }
    }
    fn code(r: AppResult<impl std::fmt::Debug>) -> (u16, &'static str) {
        let e = r.err().map(|e| (e.status(), e.code()));
        e.unwrap_or((200, "ok"))
    }

    /// The specification, written independently of `Decision::next`.
    const LEGAL: [(ListingStatus, Decision, ListingStatus); 9] = [
        (Submitted, Decision::StartReview, InReview),
        (Submitted, Decision::Approve, Approved),
        (InReview, Decision::Approve, Approved),
        (Submitted, Decision::Reject, Rejected),
        (InReview, Decision::Reject, Rejected),
        (Approved, Decision::Publish, Published),
        (Published, Decision::Suspend, Suspended),
        (Suspended, Decision::Reinstate, Published),
        (Rejected, Decision::Resubmit, Submitted),
    ];

    fn role_may(role: Role, d: Decision, own: bool) -> bool {
        match d {
            Decision::Approve | Decision::Reject | Decision::StartReview => {
                matches!(role, Role::Reviewer | Role::Governor) && !own
            }
            Decision::Publish | Decision::Suspend | Decision::Reinstate => role == Role::Governor,
            Decision::Resubmit => role == Role::Author && own,
        }
    }

    #[test]
    fn every_status_decision_role_combination() {
        let mut checked = 0;
        for status in ListingStatus::ALL {
            for d in Decision::ALL {
                for role in Role::ALL {
                    for own in [false, true] {
                        let a = actor(if own { "u-author" } else { "u-other" }, "o1", &[role]);
                        let got = decide(status, d, &a, &facts("u-author"));
                        let legal = LEGAL.iter().find(|(f, dd, _)| *f == status && *dd == d).map(|t| t.2);
                        let review = matches!(d, Decision::Approve | Decision::Reject | Decision::StartReview);
                        match (role_may(role, d, own), legal) {
                            (true, Some(next)) => assert_eq!(got, Ok(next), "{status:?} {d:?} {role:?} own={own}"),
                            (true, None) => {
                                let e = got.err();
                                assert_eq!(
                                    e.as_ref().map(|e| (e.status(), e.code())),
                                    Some((409, "illegal_transition"))
                                );
                                let msg = e.map(|e| e.public_message()).unwrap_or_default();
                                assert!(msg.contains(status.as_str()) && msg.contains(d.as_str()), "{msg}");
                            }
                            (false, _) => {
                                let want = if own && review && matches!(role, Role::Reviewer | Role::Governor) {
                                    "own_listing"
                                } else {
                                    "forbidden"
                                };
                                assert_eq!(code(got), (403, want), "{status:?} {d:?} {role:?} own={own}");
                            }
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 6 * 7 * 5 * 2);
    }

    #[test]
    fn foreign_org_gets_404_and_combined_roles_work() {
        let gov = actor("g", "o2", &[Role::Governor]);
        assert_eq!(code(decide(Approved, Decision::Publish, &gov, &facts("a"))), (404, "not_found"));
        let both = actor("g", "o1", &[Role::Learner, Role::Governor]);
        assert_eq!(decide(Approved, Decision::Publish, &both, &facts("a")), Ok(Published));
        let own_gov = actor("a", "o1", &[Role::Author, Role::Governor]);
        assert_eq!(code(decide(Submitted, Decision::Approve, &own_gov, &facts("a"))), (403, "own_listing"));
        assert_eq!(decide(Approved, Decision::Publish, &own_gov, &facts("a")), Ok(Published));
        assert_eq!(available_decisions(Submitted, &actor("r", "o1", &[Role::Reviewer]), &facts("a")).len(), 3);
    }

    #[test]
    fn decision_requests_and_reasons() {
        assert_eq!(code(DecisionRequest::parse(&json!({"decision": "reject"}))), (422, "reason_required"));
        assert_eq!(
            code(DecisionRequest::parse(&json!({"decision": "suspend", "reason": "  "}))),
            (422, "reason_required")
        );
        let ok = DecisionRequest::parse(&json!({"decision": "reject", "reason": " spam "}));
        assert_eq!(ok, Ok(DecisionRequest { decision: Decision::Reject, reason: Some("spam".into()) }));
        assert_eq!(DecisionRequest::parse(&json!({"decision": "approve"})).map(|r| r.reason), Ok(None));
        let long = "x".repeat(2001);
        let e = DecisionRequest::parse(&json!({"decision": "approve", "reason": long})).err();
        assert!(e.is_some_and(|e| e.status() == 400 && e.public_message().starts_with("reason:")));
        let e = DecisionRequest::parse(&json!({"decision": "bless"})).err();
        assert!(e.is_some_and(|e| e.status() == 400 && e.public_message().starts_with("decision:")));
        let req = DecisionRequest { decision: Decision::Approve, reason: None };
        let rec = handle_decision("l1", InReview, &req, &actor("r", "o1", &[Role::Reviewer]), &facts("a"), 42);
        assert_eq!(rec.map(|r| (r.from, r.to, r.actor_id, r.at_ms)), Ok((InReview, Approved, "r".into(), 42)));
        assert_eq!(serde_json::to_value(InReview).ok(), Some(json!("in_review")));
    }

    fn err_field<T>(r: AppResult<T>) -> String {
        r.err().map(|e| e.public_message().split(':').next().unwrap_or_default().to_string()).unwrap_or_default()
    }

    #[test]
    fn submission_validation_names_fields() {
        let good = json!({"lesson_id": "les-1", "version": 3, "price_cents": 500, "visibility": "org"});
        let s = validate_submission(&good);
        assert_eq!(s.map(|s| (s.version, s.price_cents, s.visibility)), Ok((3, Some(500), Visibility::Org)));
        let free = validate_submission(&json!({"lesson_id": "l", "version": 1, "visibility": "public"}));
        assert_eq!(free.map(|s| s.price_cents), Ok(None));
        for (bad, name) in [
            (json!({"version": 1, "visibility": "public"}), "lesson_id"),
            (json!({"lesson_id": "a/b", "version": 1, "visibility": "public"}), "lesson_id"),
            (json!({"lesson_id": "l", "version": 0, "visibility": "public"}), "version"),
            (json!({"lesson_id": "l", "version": 5_000_000_000u64, "visibility": "public"}), "version"),
            (json!({"lesson_id": "l", "version": 1, "visibility": "secret"}), "visibility"),
            (json!({"lesson_id": "l", "version": 1, "visibility": "public", "price_cents": -1}), "price_cents"),
            (json!({"lesson_id": "l", "version": 1, "visibility": "public", "price_cents": 1_000_001}), "price_cents"),
            (json!({"lesson_id": "l", "version": 1, "visibility": "public", "price_cents": 1.5}), "price_cents"),
            (json!([1]), "body"),
        ] {
            assert_eq!(err_field(validate_submission(&bad)), name, "{bad}");
        }
    }

    #[test]
    fn review_validation_names_fields() {
        assert_eq!(validate_review(&json!({"rating": 5, "text": ""})), Ok(Review { rating: 5, text: String::new() }));
        assert_eq!(validate_review(&json!({"rating": 1})).map(|r| r.text), Ok(String::new()));
        for (bad, name) in [
            (json!({"rating": 0, "text": "x"}), "rating"),
            (json!({"rating": 6}), "rating"),
            (json!({"rating": "5"}), "rating"),
            (json!({"rating": 3, "text": 7}), "text"),
            (json!({"rating": 3, "text": "é".repeat(5001)}), "text"),
        ] {
            assert_eq!(err_field(validate_review(&bad)), name, "{bad}");
        }
        assert!(validate_review(&json!({"rating": 3, "text": "é".repeat(5000)})).is_ok());
    }

    #[test]
    fn trust_signal_math() {
        let none = trust_signals(&TrustInput::default());
        assert_eq!((none.rating_avg, none.rating_bayesian, none.rating_count), (None, 3.5, 0));
        assert_eq!((none.completion_rate, none.certificate_pass_rate), (None, None));
        let t = trust_signals(&TrustInput {
            ratings: vec![5, 5, 4, 9],
            completed_ratings: Vec::new(),
            attempts: 10,
            completed_attempts: 4,
            certificate_attempts_passed: 3,
            author_verified: true,
        });
        // (5*3.5 + 14) / (5 + 3) = 31.5 / 8
        assert_eq!(t.rating_bayesian, 3.9375);
        assert_eq!((t.rating_count, t.rating_avg), (3, Some(14.0 / 3.0)));
        assert_eq!((t.completion_rate, t.certificate_pass_rate, t.author_verified), (Some(0.4), Some(0.75), true));
        let one = trust_signals(&TrustInput { ratings: vec![5], ..Default::default() });
        let many =
            trust_signals(&TrustInput { ratings: vec![5, 5, 5, 5, 4, 5, 5, 5, 5, 5, 5, 5], ..Default::default() });
        assert!(many.rank_score() > one.rank_score());
        assert_eq!(one.rank_score(), 3_750_000);
        assert_eq!(rank_score(f64::NAN), 0);
        let raced = trust_signals(&TrustInput { attempts: 2, completed_attempts: 3, ..Default::default() });
        assert_eq!(raced.completion_rate, Some(1.0));
        assert_eq!(none.completed_rating_count, 0);
        assert_eq!(t.completed_rating_count, 0);
        let completers = trust_signals(&TrustInput {
            ratings: vec![5, 4, 2, 0],
            completed_ratings: vec![5, 2, 0],
            ..Default::default()
        });
        // Invalid ratings count in neither; the completers' ratings are part of the whole.
        assert_eq!((completers.rating_count, completers.completed_rating_count), (3, 2));
        let over = trust_signals(&TrustInput { ratings: vec![5], completed_ratings: vec![5, 5], ..Default::default() });
        assert_eq!(over.completed_rating_count, 1);
        // The list's mean from tallies agrees with the detail's mean from rows.
        assert_eq!(mean_rating(t.rating_count, 14), t.rating_avg);
        assert_eq!(mean_rating(0, 0), None);
    }

    fn item(id: &str, rating: f64, created: i64) -> ListingSummary {
        ListingSummary {
            listing_id: id.into(),
            lesson_id: format!("les-{id}"),
            version: 1,
            title: format!("Lesson {id}"),
            summary: "Intro to Fractions".into(),
            tags: vec!["Math".into()],
            status: Published,
            visibility: Visibility::Public,
            org: "o1".into(),
            created_at_ms: created,
            rating_bayesian: rating,
            rating_avg: Some(rating),
            rating_count: 1,
            price_cents: None,
        }
    }
    fn q(q: Option<&str>, tag: Option<&str>, sort: &str, limit: &str) -> Query {
        Query::parse(q, tag, Some(sort), None, Some(limit)).unwrap_or_default()
    }
    fn ids(p: &Page) -> Vec<&str> {
        p.items.iter().map(|i| i.listing_id.as_str()).collect()
    }

    #[test]
    fn search_drive_starts_from_the_rarest_filter() {
        use SearchDrive::*;
        assert_eq!(search_drive(None, None, 500), SortIndex);
        assert_eq!(search_drive(Some(0), Some(900), 500), Empty);
        assert_eq!(search_drive(Some(501), Some(0), 500), Empty);
        assert_eq!(search_drive(Some(12), None, 500), Text);
        assert_eq!(search_drive(None, Some(500), 500), Tag);
        assert_eq!(search_drive(Some(501), None, 500), SortIndex);
        assert_eq!(search_drive(Some(40), Some(30), 500), Tag);
        assert_eq!(search_drive(Some(30), Some(501), 500), Text);
        assert_eq!(search_drive(Some(501), Some(501), 500), SortIndex);
    }

    #[test]
    fn text_search_splits_terms_for_the_trigram_index() {
        let q = Query::parse(Some("  Algebra 6 a\"b\"c  x "), None, None, None, None).unwrap_or_default();
        let ts = q.text_search();
        assert_eq!(ts.fts_match.as_deref(), Some("\"algebra\" AND \"a\"\"b\"\"c\""));
        assert_eq!(ts.short_terms, vec!["6".to_string(), "x".to_string()]);
        assert_eq!(Query::default().text_search(), TextSearch::default());
    }

    #[test]
    fn search_filters_and_sorts() {
        let mut items = vec![item("a", 4.0, 1), item("b", 4.5, 3), item("c", 4.0, 2)];
        items.push(ListingSummary { status: Suspended, ..item("d", 5.0, 9) });
        items.push(ListingSummary { visibility: Visibility::Org, org: "o2".into(), ..item("e", 5.0, 9) });
        items.push(ListingSummary { tags: vec!["Art".into()], title: "Drawing".into(), ..item("f", 1.0, 0) });
        assert_eq!(ids(&search(&items, &q(None, None, "rating", "50"), None)), ["b", "a", "c", "f"]);
        assert_eq!(ids(&search(&items, &q(None, None, "rating", "50"), Some("o2"))), ["e", "b", "a", "c", "f"]);
        assert_eq!(ids(&search(&items, &q(None, None, "new", "50"), None)), ["b", "c", "a", "f"]);
        assert_eq!(ids(&search(&items, &q(None, Some("MATH"), "new", "50"), None)), ["b", "c", "a"]);
        assert_eq!(ids(&search(&items, &q(Some("  FRACTIONS   lesson "), None, "new", "50"), None)), ["b", "c", "a"]);
        assert_eq!(ids(&search(&items, &q(Some("art drawing"), None, "new", "50"), None)), ["f"]);
        assert!(search(&items, &q(Some("fractionsmath"), None, "new", "50"), None).items.is_empty());
        let p = search(&items, &q(None, None, "rating", "2"), None);
        assert_eq!((ids(&p), p.next_cursor.is_some()), (vec!["b", "a"], true));
    }

    #[test]
    fn query_parse_names_params() {
        let d = Query::parse(None, None, None, None, None);
        assert_eq!(d.map(|d| (d.sort, d.limit)), Ok((Sort::Rating, 20)));
        let name = |r: AppResult<Query>| r.err().map(|e| (e.status(), err_field::<()>(Err(e))));
        assert_eq!(name(Query::parse(None, None, Some("top"), None, None)), Some((400, "sort".into())));
        assert_eq!(name(Query::parse(None, None, None, Some("!!"), None)), Some((400, "cursor".into())));
        assert_eq!(name(Query::parse(None, None, None, None, Some("0"))), Some((400, "limit".into())));
        assert_eq!(name(Query::parse(None, None, None, None, Some("51"))), Some((400, "limit".into())));
        let new_cursor = Cursor { sort: Sort::New, primary: 5, listing_id: "x".into() }.encode();
        assert_eq!(
            name(Query::parse(None, None, Some("rating"), Some(&new_cursor), None)),
            Some((400, "cursor".into()))
        );
        assert!(Query::parse(None, None, Some("new"), Some(&new_cursor), None).is_ok());
    }

    #[test]
    fn cache_keys_are_stable_distinct_and_bounded() {
        let a = q(Some("Fractions  intro"), None, "rating", "20");
        let b = q(Some("fractions intro"), None, "rating", "20");
        assert_eq!(list_cache_key("public", &a), list_cache_key("public", &b));
        let base = list_cache_key("public", &a);
        assert_ne!(base, list_cache_key(&viewer_scope(Some("o1")), &a));
        assert_ne!(base, list_cache_key("public", &q(Some("fractions intro"), None, "new", "20")));
        assert_ne!(base, list_cache_key("public", &q(Some("fractions intro"), None, "rating", "21")));
        assert_ne!(
            list_cache_key("public", &q(None, Some("x"), "new", "5")),
            list_cache_key("public", &q(Some("x"), None, "new", "5"))
        );
        let long = q(Some(&"w ".repeat(100)), Some(&"t".repeat(64)), "new", "50");
        assert!(list_cache_key(&"s".repeat(500), &long).len() < 200);
        assert_eq!(detail_cache_key("l1", "public"), "mkt:v1:detail:l1:public");
        assert!(detail_cache_key(&"é".repeat(300), "org:o1").len() < 200);
    }

    proptest! {
        // No regression files: this crate's tree is shared.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn paging_yields_exactly_the_sorted_list(
            rows in proptest::collection::vec((0u8..4, 0i64..4, 0u8..8, any::<bool>()), 0..40),
            limit in 1u32..=50,
            sort_new in any::<bool>(),
            member in any::<bool>(),
        ) {
            let items: Vec<ListingSummary> = rows
                .iter()
                .enumerate()
                .map(|(n, (r, c, kind, math))| {
                    let mut it = item(&format!("l{:02}", (n * 7) % 41), 3.0 + f64::from(*r) * 0.5, *c);
                    it.status = if *kind == 0 { Rejected } else { Published };
                    if *kind == 1 { it.visibility = Visibility::Org; it.org = "o2".into(); }
                    it.tags = vec![if *math { "Math" } else { "art" }.into()];
                    it
                })
                .collect();
            let sort = if sort_new { "new" } else { "rating" };
            let mut expected: Vec<&ListingSummary> =
                items.iter().filter(|i| i.status == Published && (member || i.org == "o1") && i.tags[0] == "Math").collect();
            expected.sort_by(|a, b| {
                let k = |i: &ListingSummary| if sort_new { i.created_at_ms } else { rank_score(i.rating_bayesian) };
                k(b).cmp(&k(a)).then(a.listing_id.cmp(&b.listing_id))
            });
            let want: Vec<&str> = expected.iter().map(|i| i.listing_id.as_str()).collect();
            let mut got: Vec<String> = Vec::new();
            let mut cursor: Option<String> = None;
            for _ in 0..100 {
                let query = Query::parse(None, Some("math"), Some(sort), cursor.as_deref(), Some(&limit.to_string()));
                prop_assert!(query.is_ok());
                let page = search(&items, &query.unwrap_or_default(), member.then_some("o2"));
                prop_assert!(page.items.len() <= limit as usize);
                got.extend(page.items.iter().map(|i| i.listing_id.clone()));
                cursor = page.next_cursor;
                if cursor.is_none() { break; }
            }
            prop_assert!(cursor.is_none());
            prop_assert_eq!(got, want);
        }
    }
}
