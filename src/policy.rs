//! Policy: the one authorization matrix, plans with hard limits, and rate
//! arithmetic. Every adapter (HTTP, the classroom object) asks here; the web
//! app mirrors the same table but is never trusted.

use crate::error::AppError;
use crate::identity::{Claims, Role};
use serde::Serialize;

/// Everything a caller may try to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    RunCreate,
    RunAppend,
    RunRead,
    /// Reading a run as one who took part in it (its writer, or an attendee
    /// of the session it records): what a learner replays.
    RunReplay,
    LessonCreate,
    LessonVersion,
    LessonRead,
    LessonReadAnswerKey,
    AssetUpload,
    SessionCreate,
    SessionTeach,
    SessionObserve,
    ListingSubmit,
    ListingReview,
    ListingGovern,
    ReviewWrite,
    AttemptCreate,
    CertificateReadAny,
    CertificateRevoke,
    AiJobCreate,
    AuditRead,
    MetricsRead,
    UsageRead,
    PersonalDataErase,
}

impl Action {
    pub const ALL: [Action; 24] = [
        Action::RunCreate,
        Action::RunAppend,
        Action::RunRead,
        Action::RunReplay,
        Action::LessonCreate,
        Action::LessonVersion,
        Action::LessonRead,
        Action::LessonReadAnswerKey,
        Action::AssetUpload,
        Action::SessionCreate,
        Action::SessionTeach,
        Action::SessionObserve,
        Action::ListingSubmit,
        Action::ListingReview,
        Action::ListingGovern,
        Action::ReviewWrite,
        Action::AttemptCreate,
        Action::CertificateReadAny,
        Action::CertificateRevoke,
        Action::AiJobCreate,
        Action::AuditRead,
        Action::MetricsRead,
        Action::UsageRead,
        Action::PersonalDataErase,
    ];
}

/// Where the resource stands relative to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// The resource belongs to the caller's org.
    pub same_org: bool,
    /// The caller created it (or, for a session or attempt run, is its writer).
    pub owner: bool,
}

impl Scope {
    pub const OWN: Scope = Scope { same_org: true, owner: true };
    pub const ORG: Scope = Scope { same_org: true, owner: false };
    pub const FOREIGN: Scope = Scope { same_org: false, owner: false };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Another org's resource: adapters answer 404 so its existence leaks nothing.
    DenyForeign,
    /// In the org, but no role (or ownership) grants it: 403 with the reason.
    DenyRole(&'static str),
}

/// Which roles may act, and whether they must own the resource.
fn rule(action: Action) -> (&'static [Role], bool, &'static str) {
    use Role::*;
    match action {
        Action::RunCreate => (&[Author, Teacher], false, "only authors and teachers create runs"),
        Action::RunAppend => {
            (&[Author, Teacher, Learner, Governor, Reviewer], true, "only the run's writer appends to it")
        }
        Action::RunRead => {
            (&[Author, Teacher, Governor], false, "runs are read by the org's authors, teachers and governors")
        }
        Action::RunReplay => (
            &[Author, Teacher, Reviewer, Learner, Governor],
            true,
            "runs are read by the org's authors, teachers and governors, or by those who took part in them",
        ),
        Action::LessonCreate => (&[Author], false, "only authors create lessons"),
        Action::LessonVersion => (&[Author], true, "only the lesson's author publishes new versions"),
        Action::LessonRead => {
            (&[Author, Teacher, Reviewer, Learner, Governor], false, "no role grants reading lessons")
        }
        Action::LessonReadAnswerKey => {
            (&[Reviewer, Governor], false, "the answer key is for the lesson's author, reviewers and governors")
        }
        Action::AssetUpload => (&[Author], false, "only authors upload media"),
        Action::SessionCreate => (&[Teacher], false, "only teachers open sessions"),
        Action::SessionTeach => (&[Teacher], true, "only the session's teacher drives it"),
        Action::SessionObserve => (&[Author, Teacher, Reviewer, Learner, Governor], false, "no role grants joining"),
        Action::ListingSubmit => (&[Author], true, "only the lesson's author submits it"),
        Action::ListingReview => (&[Reviewer, Governor], false, "only reviewers and governors decide on listings"),
        Action::ListingGovern => (&[Governor], false, "only governors publish, suspend and reinstate"),
        Action::ReviewWrite => (&[Learner], false, "only learners write reviews"),
        Action::AttemptCreate => (&[Learner], false, "only learners take attempts"),
        Action::CertificateReadAny => {
            (&[Teacher, Governor], false, "only teachers and governors read others' certificates")
        }
        Action::CertificateRevoke => (&[Governor], false, "only governors revoke certificates"),
        Action::AiJobCreate => (&[Author, Teacher, Reviewer, Learner, Governor], false, "no role grants AI jobs"),
        Action::AuditRead => (&[Governor], false, "only governors read the audit log"),
        Action::MetricsRead => (&[Governor], false, "only governors read metrics"),
        Action::UsageRead => (&[Author, Teacher, Reviewer, Learner, Governor], false, "no role grants reading usage"),
        Action::PersonalDataErase => {
            (&[Governor], false, "only the person themself or a governor erases personal data")
        }
    }
}

/// Public marketplace reads and the like never reach here: they need no matrix.
pub fn decide(roles: &[Role], action: Action, scope: Scope) -> Decision {
    if !scope.same_org {
        return Decision::DenyForeign;
    }
    let (allowed, must_own, reason) = rule(action);
    let has_role = roles.iter().any(|r| allowed.contains(r));
    // Erasing one's own personal data needs no role; a lesson's own author
    // sees its answer key whatever else they are.
    if scope.owner
        && (action == Action::PersonalDataErase
            || action == Action::LessonReadAnswerKey && roles.contains(&Role::Author))
    {
        return Decision::Allow;
    }
    if has_role && (!must_own || scope.owner) {
        Decision::Allow
    } else {
        Decision::DenyRole(reason)
    }
}

/// `decide` as a `Result`: 404 for another org's resource, 403 otherwise.
pub fn authorize(claims: &Claims, action: Action, scope: Scope, what: &str) -> Result<(), AppError> {
    match decide(&claims.roles, action, scope) {
        Decision::Allow => Ok(()),
        Decision::DenyForeign => Err(AppError::not_found(what)),
        Decision::DenyRole(reason) => Err(AppError::forbidden(reason)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    Free,
    Pro,
    Enterprise,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub live_sessions: u64,
    pub observers_per_session: u64,
    pub ai_jobs_per_month: u64,
    pub ai_jobs_per_minute: u64,
    pub media_bytes: u64,
}

impl Plan {
    pub fn parse(s: &str) -> Option<Plan> {
        match s {
            "free" => Some(Plan::Free),
            "pro" => Some(Plan::Pro),
            "enterprise" => Some(Plan::Enterprise),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Pro => "pro",
            Plan::Enterprise => "enterprise",
        }
    }
    pub fn limits(self) -> Limits {
        const MIB: u64 = 1024 * 1024;
        match self {
            Plan::Free => Limits {
                live_sessions: 3,
                observers_per_session: 1_000,
                ai_jobs_per_month: 1_000,
                ai_jobs_per_minute: 60,
                media_bytes: 100 * MIB,
            },
            Plan::Pro => Limits {
                live_sessions: 50,
                observers_per_session: 2_000,
                ai_jobs_per_month: 50_000,
                ai_jobs_per_minute: 600,
                media_bytes: 10 * 1024 * MIB,
            },
            Plan::Enterprise => Limits {
                live_sessions: 1_000,
                observers_per_session: 5_000,
                ai_jobs_per_month: 1_000_000,
                ai_jobs_per_minute: 6_000,
                media_bytes: 1024 * 1024 * MIB,
            },
        }
    }
}

impl Limits {
    /// Operators may tune plans without a deploy: `PLAN_OVERRIDES` is JSON like
    /// `{"free": {"ai_jobs_per_month": 500}}`. Unknown names and non-integer
    /// values are ignored, so a typo can never remove a limit.
    pub fn with_overrides(mut self, plan: Plan, overrides: Option<&serde_json::Value>) -> Limits {
        let Some(o) = overrides.and_then(|v| v.get(plan.as_str())).and_then(|v| v.as_object()) else { return self };
        for (name, value) in o {
            let Some(n) = value.as_u64() else { continue };
            match name.as_str() {
                "live_sessions" => self.live_sessions = n,
                "observers_per_session" => self.observers_per_session = n,
                "ai_jobs_per_month" => self.ai_jobs_per_month = n,
                "ai_jobs_per_minute" => self.ai_jobs_per_minute = n,
                "media_bytes" => self.media_bytes = n,
                _ => {}
            }
        }
        self
    }
}

/// How many of `wanted` fit a budget of `limit` with `used` spent: work
/// that may be partly done (publish-time explanations) takes what fits.
pub fn budget_room(limit: u64, used: u64, wanted: u64) -> u64 {
    limit.saturating_sub(used).min(wanted)
}

/// A hard limit: `used + requested` must stay within `limit`, else 402 naming it.
pub fn check_limit(name: &str, limit: u64, used: u64, requested: u64) -> Result<(), AppError> {
    if used.checked_add(requested).is_none_or(|total| total > limit) {
        Err(AppError::plan_limit(name, format!("the plan allows {limit}, {used} already used")))
    } else {
        Ok(())
    }
}

/// Fixed-window rate limiting: the window a time falls in, and the verdict for
/// the `count`-th request in it (count includes this one).
pub fn rate_window_start(now_ms: i64, window_ms: i64) -> i64 {
    now_ms.div_euclid(window_ms.max(1)) * window_ms.max(1)
}

pub fn rate_verdict(count: u64, limit: u64, now_ms: i64, window_ms: i64) -> Result<(), AppError> {
    if count <= limit {
        return Ok(());
    }
    let window_end = rate_window_start(now_ms, window_ms) + window_ms.max(1);
    let wait_ms = (window_end - now_ms).max(0) as u64;
    Err(AppError::rate_limited(wait_ms.div_ceil(1000)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected matrix, written out independently of `rule`: for each
    /// action the roles allowed in-org, and whether ownership is needed.
    fn expected(action: Action, role: Role, owner: bool) -> bool {
        use Action::*;
        use Role::*;
        match action {
            RunCreate => matches!(role, Author | Teacher),
            RunAppend => owner,
            RunRead => matches!(role, Author | Teacher | Governor),
            RunReplay => owner,
            LessonCreate | AssetUpload => role == Author,
            LessonVersion => role == Author && owner,
            LessonRead | SessionObserve | AiJobCreate | UsageRead => true,
            LessonReadAnswerKey => matches!(role, Reviewer | Governor) || role == Author && owner,
            SessionCreate => role == Teacher,
            SessionTeach => role == Teacher && owner,
            ListingSubmit => role == Author && owner,
            ListingReview => matches!(role, Reviewer | Governor),
            ListingGovern | CertificateRevoke | AuditRead | MetricsRead => role == Governor,
            ReviewWrite | AttemptCreate => role == Learner,
            CertificateReadAny => matches!(role, Teacher | Governor),
            PersonalDataErase => owner || role == Governor,
        }
    }

    #[test]
    fn every_cell_of_the_matrix() {
        let mut cells = 0;
        for action in Action::ALL {
            for role in Role::ALL {
                for owner in [false, true] {
                    let got = decide(&[role], action, Scope { same_org: true, owner });
                    assert_eq!(
                        got == Decision::Allow,
                        expected(action, role, owner),
                        "{action:?} {role:?} owner={owner}"
                    );
                    // Another org is always refused, whatever the role.
                    assert_eq!(decide(&[role], action, Scope { same_org: false, owner }), Decision::DenyForeign);
                    cells += 2;
                }
            }
        }
        assert_eq!(cells, 24 * 5 * 4);
    }

    #[test]
    fn a_learner_replays_only_a_class_they_took_part_in() {
        let learner = [Role::Learner];
        // Not a reader of the org's runs...
        assert!(matches!(decide(&learner, Action::RunRead, Scope::ORG), Decision::DenyRole(_)));
        // ...but a participant (attendee, or the run's own writer) replays it,
        assert_eq!(decide(&learner, Action::RunReplay, Scope::OWN), Decision::Allow);
        // one who was not there does not, and another org's run stays hidden.
        assert!(matches!(decide(&learner, Action::RunReplay, Scope::ORG), Decision::DenyRole(_)));
        assert_eq!(decide(&learner, Action::RunReplay, Scope { same_org: false, owner: true }), Decision::DenyForeign);
    }

    #[test]
    fn no_roles_means_nothing_but_own_erasure() {
        for action in Action::ALL {
            let d = decide(&[], action, Scope::ORG);
            assert_ne!(d, Decision::Allow, "{action:?}");
        }
        assert_eq!(decide(&[], Action::PersonalDataErase, Scope::OWN), Decision::Allow);
    }

    #[test]
    fn limit_arithmetic() {
        assert!(check_limit("live_sessions", 3, 2, 1).is_ok());
        let e = check_limit("live_sessions", 3, 3, 1).unwrap_err();
        assert_eq!((e.status(), e.code()), (402, "plan_limit_reached"));
        assert!(e.public_message().contains("live_sessions"));
        assert!(check_limit("x", u64::MAX, u64::MAX, 1).is_err());
    }

    #[test]
    fn rate_arithmetic() {
        assert_eq!(rate_window_start(61_500, 60_000), 60_000);
        assert!(rate_verdict(60, 60, 61_500, 60_000).is_ok());
        let e = rate_verdict(61, 60, 61_500, 60_000).unwrap_err();
        assert_eq!((e.status(), e.retry_after()), (429, Some(59)));
        // Just before the window ends the wait rounds up to a whole second.
        assert_eq!(rate_verdict(61, 60, 119_999, 60_000).unwrap_err().retry_after(), Some(1));
    }

    #[test]
    fn overrides_tune_only_named_limits() {
        assert_eq!(
            [budget_room(10, 3, 5), budget_room(10, 8, 5), budget_room(3, 9, 5), budget_room(5, 0, 0)],
            [5, 2, 0, 0]
        );
        let o = serde_json::json!({"free": {"ai_jobs_per_month": 5, "bogus": 1, "live_sessions": "x"}});
        let l = Plan::Free.limits().with_overrides(Plan::Free, Some(&o));
        assert_eq!(l.ai_jobs_per_month, 5);
        assert_eq!(l.live_sessions, Plan::Free.limits().live_sessions);
        assert_eq!(Plan::Pro.limits().with_overrides(Plan::Pro, Some(&o)), Plan::Pro.limits());
        assert_eq!(Plan::Free.limits().with_overrides(Plan::Free, None), Plan::Free.limits());
    }

    #[test]
    fn free_plan_allows_60_ai_jobs_per_minute() {
        assert_eq!(Plan::Free.limits().ai_jobs_per_minute, 60);
        assert_eq!(Plan::parse("pro"), Some(Plan::Pro));
        assert_eq!(Plan::parse("gold"), None);
    }
}
