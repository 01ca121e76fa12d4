//! The token gate (contract §10, "Revocation"): a token whose signature and
//! `exp` passed ([`crate::domain::auth`]) must also not be revoked — here
//! (`POST /api/realtime/revoke`, kept in the store) or at the WeCare
//! backend (`AUTH_CHECK_URL`, the backend's `GET /api/auth/me`: 401/403
//! means logged out). Backend answers are cached per token for the check
//! interval, so a busy socket costs one call per interval, and a live
//! socket is asked about again every interval.

use std::collections::HashMap;
use std::sync::Mutex;
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
    /// Revoked at this time (epoch ms).
    Revoked { at_ms: i64 },
    /// The backend could not be asked and `AUTH_CHECK_FAIL=closed`.
    Unverifiable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Valid,
    Revoked { at_ms: i64 },
    Unreachable,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Gate {
    pub(crate) revocations: Revocations,
    check: Option<AuthCheckConfig>,
    upstream: Upstream,
    cache: Mutex<HashMap<String, (Answer, Instant)>>,
}

impl Gate {
    pub(crate) fn new(check: Option<AuthCheckConfig>, upstream: Upstream) -> Self {
        Self { revocations: Revocations::default(), check, upstream, cache: Mutex::default() }
    }

    /// The check interval, when tokens are checked with the backend.
    pub(crate) fn check_interval(&self) -> Option<Duration> {
        self.check.as_ref().map(|c| c.interval)
    }

    /// Admits `p` (its token is `token`, its hash `hash`), or says why not.
    pub(crate) async fn admit(&self, token: &str, hash: &str, p: &Principal, metrics: &Metrics) -> Result<(), Refusal> {
        if let Some(at) = self.revocations.revoked_at(hash, p) {
            return Err(Refusal::Revoked { at_ms: at.saturating_mul(1000) });
        }
        let Some(check) = &self.check else {
            return Ok(());
        };
        match self.ask(check, token, hash, metrics).await {
            Answer::Valid => Ok(()),
            Answer::Revoked { at_ms } => Err(Refusal::Revoked { at_ms }),
            Answer::Unreachable if check.fail_open => Ok(()),
            Answer::Unreachable => Err(Refusal::Unverifiable),
        }
    }

    /// Only the store's revocations (no backend call): for sweeps.
    pub(crate) fn revoked_here(&self, hash: &str, p: &Principal) -> Option<i64> {
        self.revocations.revoked_at(hash, p).map(|at| at.saturating_mul(1000))
    }

    async fn ask(&self, check: &AuthCheckConfig, token: &str, hash: &str, metrics: &Metrics) -> Answer {
        let now = Instant::now();
        if let Some((answer, at)) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(hash)
            && now.duration_since(*at) < check.interval
        {
            return *answer;
        }
        let answer = match self.upstream.call(Method::GET, &check.url, token, None, CHECK_TIMEOUT).await {
            Ok(s) if s.as_u16() == 401 || s.as_u16() == 403 => Answer::Revoked { at_ms: crate::clock::now_ms() },
            Ok(s) if s.is_success() => Answer::Valid,
            // A 5xx or anything else says nothing about the token.
            Ok(_) | Err(_) => Answer::Unreachable,
        };
        metrics.auth_checked(match answer {
            Answer::Valid => "ok",
            Answer::Revoked { .. } => "revoked",
            Answer::Unreachable if check.fail_open => "unreachable_open",
            Answer::Unreachable => "unreachable_closed",
        });
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, at)| now.duration_since(*at) < check.interval);
        }
        // An unreachable backend is asked again next time.
        if answer != Answer::Unreachable {
            cache.insert(hash.to_string(), (answer, now));
        }
        answer
    }
}
