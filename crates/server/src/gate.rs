//! The token gate (contract §10, "Revocation"): a token whose signature and
//! `exp` passed ([`crate::domain::auth`]) must also not be revoked — here
//! (`POST /api/realtime/revoke` or `/logout`, kept in the store) or at the
//! WeCare backend (`AUTH_CHECK_URL`: 401/403 means logged out). Backend
//! answers are cached per token for the check interval, so sockets sharing
//! a token cost one call per interval, and a live socket is asked about
//! again every interval. Every call takes its turn from the backend budget
//! (it shares the backend's rate limit with forwarding); a check that gets
//! no turn in time is `deferred` and judged like an unreachable backend at
//! a handshake, or simply asked again soon for a live socket. A "logged
//! out" answer is reported as such, so the caller can remember it for good
//! (the backend's own logout list lives in its memory).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;

use crate::domain::auth::Principal;
use crate::domain::revocation::Revocations;
use crate::metrics::Metrics;
use crate::upstream::Upstream;

/// Most cached backend answers; beyond it the expired ones are dropped.
const CACHE_MAX: usize = 100_000;
/// How long one backend check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a handshake or REST call waits for the budget to allow a check.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(5);
/// How long a live socket's re-check waits for the budget before it is
/// postponed (asked again after [`RECHECK_POSTPONED`]).
const RECHECK_WAIT: Duration = Duration::from_secs(30);
/// How soon a postponed re-check is tried again.
pub(crate) const RECHECK_POSTPONED: Duration = Duration::from_secs(5);

/// Checking tokens with the WeCare backend.
#[derive(Clone, Debug)]
pub struct AuthCheckConfig {
    /// The backend URL called with the token as its bearer, e.g.
    /// `http://backend:4000/api/auth/me`.
    pub url: String,
    /// How long an answer holds; a live socket is checked again after it.
    /// Defaults to 60 s.
    pub interval: Duration,
    /// When the backend cannot be reached: `true` judges the token by its
    /// signature and `exp` alone (`AUTH_CHECK_FAIL=open`, the default),
    /// `false` refuses it (`closed`).
    pub fail_open: bool,
}

/// Why a token was refused by the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Revoked here at this time (epoch ms).
    Revoked { at_ms: i64 },
    /// The backend says logged out (401/403), now: the caller remembers it
    /// as a revocation of the token, across restarts and nodes.
    LoggedOutAtBackend { at_ms: i64 },
    /// The backend could not be asked and `AUTH_CHECK_FAIL=closed`.
    Unverifiable,
    /// A live socket's re-check got no turn from the backend budget: it is
    /// asked again soon; the socket stays.
    Postponed,
}

/// Who asks: a new connection or REST call waits a little for the budget,
/// a live socket's periodic re-check longer (and is never cut for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Admission,
    Recheck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Valid,
    Revoked {
        at_ms: i64,
    },
    Unreachable,
    /// No turn from the budget in time (or the backend throttles us).
    Deferred,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Gate {
    pub(crate) revocations: Revocations,
    check: Option<AuthCheckConfig>,
    upstream: Upstream,
    cache: Mutex<HashMap<String, (Answer, Instant)>>,
    /// One check per token at a time: the sockets of a token (several
    /// tabs, a reconnect storm) that ask together wait for one answer.
    asking: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Gate {
    pub(crate) fn new(check: Option<AuthCheckConfig>, upstream: Upstream) -> Self {
        Self { revocations: Revocations::default(), check, upstream, cache: Mutex::default(), asking: Mutex::default() }
    }

    /// The check interval, when tokens are checked with the backend.
    pub(crate) fn check_interval(&self) -> Option<Duration> {
        self.check.as_ref().map(|c| c.interval)
    }

    /// Admits `p` (its token is `token`, its hash `hash`), or says why not.
    pub(crate) async fn admit(
        &self,
        token: &str,
        hash: &str,
        p: &Principal,
        purpose: Purpose,
        metrics: &Metrics,
    ) -> Result<(), Refusal> {
        if let Some(at) = self.revocations.revoked_at(hash, p) {
            return Err(Refusal::Revoked { at_ms: at.saturating_mul(1000) });
        }
        let Some(check) = &self.check else {
            return Ok(());
        };
        match self.ask(check, token, hash, purpose, metrics).await {
            Answer::Valid => Ok(()),
            Answer::Revoked { at_ms } => Err(Refusal::LoggedOutAtBackend { at_ms }),
            Answer::Deferred if purpose == Purpose::Recheck => Err(Refusal::Postponed),
            Answer::Unreachable | Answer::Deferred if check.fail_open => Ok(()),
            Answer::Unreachable | Answer::Deferred => Err(Refusal::Unverifiable),
        }
    }

    /// Only the store's revocations (no backend call): for sweeps.
    pub(crate) fn revoked_here(&self, hash: &str, p: &Principal) -> Option<i64> {
        self.revocations.revoked_at(hash, p).map(|at| at.saturating_mul(1000))
    }

    async fn ask(
        &self,
        check: &AuthCheckConfig,
        token: &str,
        hash: &str,
        purpose: Purpose,
        metrics: &Metrics,
    ) -> Answer {
        if let Some(answer) = self.cached(check, hash) {
            return answer;
        }
        let turn =
            Arc::clone(self.asking.lock().unwrap_or_else(|e| e.into_inner()).entry(hash.to_string()).or_default());
        let answer = {
            let _asking = turn.lock().await;
            match self.cached(check, hash) {
                // Another socket of the token asked while this one waited.
                Some(answer) => answer,
                None => self.ask_backend(check, token, hash, purpose, metrics).await,
            }
        };
        let mut asking = self.asking.lock().unwrap_or_else(|e| e.into_inner());
        // The map's and this one: nobody else waits for this token's turn.
        if Arc::strong_count(&turn) <= 2 {
            asking.remove(hash);
        }
        answer
    }

    async fn ask_backend(
        &self,
        check: &AuthCheckConfig,
        token: &str,
        hash: &str,
        purpose: Purpose,
        metrics: &Metrics,
    ) -> Answer {
        let wait = match purpose {
            Purpose::Admission => HANDSHAKE_WAIT,
            Purpose::Recheck => RECHECK_WAIT,
        };
        let answer = if self.upstream.budget().check(wait).await.is_err() {
            Answer::Deferred
        } else {
            match self.upstream.call(Method::GET, &check.url, token, None, CHECK_TIMEOUT).await {
                Ok(s) if s.as_u16() == 401 || s.as_u16() == 403 => Answer::Revoked { at_ms: crate::clock::now_ms() },
                Ok(s) if s.is_success() => Answer::Valid,
                // The backend's limiter: the budget is paused (by the call).
                Ok(s) if s.as_u16() == 429 => Answer::Deferred,
                // A 5xx or anything else says nothing about the token.
                Ok(_) | Err(_) => Answer::Unreachable,
            }
        };
        metrics.auth_checked(match (answer, check.fail_open) {
            (Answer::Valid, _) => "ok",
            (Answer::Revoked { .. }, _) => "revoked",
            (Answer::Unreachable, true) => "unreachable_open",
            (Answer::Unreachable, false) => "unreachable_closed",
            (Answer::Deferred, true) => "deferred_open",
            (Answer::Deferred, false) => "deferred_closed",
        });
        if matches!(answer, Answer::Valid | Answer::Revoked { .. }) {
            // An unreachable or deferred check is asked again next time.
            let now = Instant::now();
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= CACHE_MAX {
                cache.retain(|_, (_, at)| now.duration_since(*at) < check.interval);
            }
            cache.insert(hash.to_string(), (answer, now));
        }
        answer
    }

    /// The backend's answer about `hash`, if it is younger than the interval.
    fn cached(&self, check: &AuthCheckConfig, hash: &str) -> Option<Answer> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let (answer, at) = cache.get(hash)?;
        (at.elapsed() < check.interval).then_some(*answer)
    }
}
