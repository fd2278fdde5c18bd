//! Who is calling, and may they: the caller's bearer token checked by the kube-apiserver with a
//! TokenReview (authentication.k8s.io/v1), the verb on the target checked with a
//! SubjectAccessReview (authorization.k8s.io/v1) — the same answers `kubectl` would get.
//! oomguard's ServiceAccount needs `create` on both (the `system:auth-delegator` ClusterRole).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::reconcile::remediator::Caller;

/// A Kubernetes API request the caller must be allowed to make (group `apps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub verb: &'static str,
    /// `deployments` or `statefulsets`.
    pub resource: &'static str,
    /// `scale`, or None.
    pub subresource: Option<&'static str>,
    /// None: cluster-wide.
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl fmt::Display for Access {
    /// As `kubectl auth can-i` words it: `patch deployments/scale "web" in namespace "ns"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}.apps", self.verb, self.resource)?;
        if let Some(s) = self.subresource {
            write!(f, "/{s}")?;
        }
        if let Some(n) = &self.name {
            write!(f, " {n:?}")?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " in namespace {ns:?}"),
            None => write!(f, " in all namespaces"),
        }
    }
}

/// The authoriser's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The authoriser's reason, when it gave one.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token is not valid (expired, revoked, not a token): 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// The kube-apiserver could not be asked: 502.
    #[error("{0}")]
    Upstream(String),
}

pub trait Authenticator: Send + Sync {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Caller, AuthError>>;
    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<Decision, AuthError>>;
}

/// How long a TokenReview answer is reused (the apiserver's own webhook token cache uses 10 s
/// for failures and 2 min for successes; a short one keeps revocations effective).
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);
/// Entries kept at most; the cache is cleared when full (after dropping the expired ones).
const TOKEN_CACHE_MAX: usize = 10_000;

type TokenHash = [u8; 32];
type Answer = Result<Caller, AuthError>;

/// TokenReview and SubjectAccessReview against the kube-apiserver, TokenReviews cached briefly by
/// a SHA-256 of the token (the token itself is never kept).
pub struct KubeAuth {
    client: kube::Client,
    cache: Mutex<HashMap<TokenHash, (Instant, Answer)>>,
}

impl KubeAuth {
    pub fn new(client: kube::Client) -> KubeAuth {
        KubeAuth {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, key: &TokenHash) -> Option<Result<Caller, AuthError>> {
        let cache = self.cache.lock().ok()?;
        let (at, answer) = cache.get(key)?;
        (at.elapsed() < TOKEN_CACHE_TTL).then(|| answer.clone())
    }

    fn remember(&self, key: TokenHash, answer: &Result<Caller, AuthError>) {
        // Upstream failures are not an answer about the token: never cached.
        if matches!(answer, Err(AuthError::Upstream(_))) {
            return;
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= TOKEN_CACHE_MAX {
                cache.retain(|_, (at, _)| at.elapsed() < TOKEN_CACHE_TTL);
                if cache.len() >= TOKEN_CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(key, (Instant::now(), answer.clone()));
        }
    }

    async fn review(&self, token: &str) -> Result<Caller, AuthError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::Upstream(format!("TokenReview failed: {e}")))?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            let why = status
                .error
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "the token was not accepted".to_string());
            return Err(AuthError::Unauthenticated(format!(
                "the bearer token is not valid: {why}"
            )));
        }
        let user = status.user.unwrap_or_default();
        let username = user.username.filter(|u| !u.is_empty()).ok_or_else(|| {
            AuthError::Unauthenticated("the token's user has no name".to_string())
        })?;
        Ok(Caller {
            username,
            uid: user.uid.filter(|u| !u.is_empty()),
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        })
    }
}

fn token_hash(token: &str) -> TokenHash {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl Authenticator for KubeAuth {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Caller, AuthError>> {
        Box::pin(async move {
            let key = token_hash(token);
            if let Some(answer) = self.cached(&key) {
                return answer;
            }
            let answer = self.review(token).await;
            self.remember(key, &answer);
            answer
        })
    }

    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<Decision, AuthError>> {
        Box::pin(async move {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(caller.username.clone()),
                    uid: caller.uid.clone(),
                    groups: Some(caller.groups.clone()),
                    extra: (!caller.extra.is_empty()).then(|| caller.extra.clone()),
                    resource_attributes: Some(ResourceAttributes {
                        group: Some("apps".to_string()),
                        resource: Some(access.resource.to_string()),
                        subresource: access.subresource.map(str::to_string),
                        verb: Some(access.verb.to_string()),
                        namespace: access.namespace.clone(),
                        name: access.name.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| AuthError::Upstream(format!("SubjectAccessReview failed: {e}")))?;
            let status = answer.status.unwrap_or_default();
            let reason = status
                .reason
                .filter(|r| !r.is_empty())
                .or(status.evaluation_error.filter(|r| !r.is_empty()))
                .unwrap_or_default();
            Ok(Decision {
                allowed: status.allowed && status.denied != Some(true),
                reason,
            })
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(value: Option<&str>) -> Option<&str> {
    let v = value?.trim();
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(Some("Bearer")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn access_reads_like_kubectl_auth_can_i() {
        let a = Access {
            verb: "patch",
            resource: "deployments",
            subresource: Some("scale"),
            namespace: Some("ns".into()),
            name: Some("web".into()),
        };
        assert_eq!(
            a.to_string(),
            "patch deployments.apps/scale \"web\" in namespace \"ns\""
        );
        let l = Access {
            verb: "list",
            resource: "deployments",
            subresource: None,
            namespace: None,
            name: None,
        };
        assert_eq!(l.to_string(), "list deployments.apps in all namespaces");
    }

    #[test]
    fn token_hashes_differ_and_are_stable() {
        assert_eq!(token_hash("a"), token_hash("a"));
        assert_ne!(token_hash("a"), token_hash("b"));
    }
}
