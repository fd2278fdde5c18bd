//! Every error the API answers: one JSON body shape, one status per kind (docs/openapi.yaml,
//! `Error`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::auth::AuthError;
use crate::reconcile::remediator::RemediateError;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiError {
    /// The HTTP status, repeated in the body.
    pub status: u16,
    /// A stable machine-readable code (see [`ApiError`]'s constructors).
    pub error: &'static str,
    /// What went wrong and what to do, for a person.
    pub message: String,
    /// The policy bound a request exceeded (e.g. `reconcile.maxReplicas`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound: Option<String>,
    /// When a held-back request may be retried: unix seconds, and seconds from now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: status.as_u16(),
            error,
            message: message.into(),
            bound: None,
            until: None,
            retry_after_seconds: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// Well-formed, but a value is not acceptable (missing parameter, unknown container).
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    pub fn out_of_bounds(bound: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            bound: Some(bound.to_string()),
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "out_of_bounds", message)
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The policy or the workload says hands off (excluded, reconciler disabled).
    pub fn refused(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "refused", message)
    }

    pub fn no_change(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "no_change", message)
    }

    pub fn upstream(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_GATEWAY, "upstream", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 429: `error` is `rate_limited` (this API's limit) or `held_back` (the reconciler's
    /// cooldown or hourly budget).
    pub fn too_many(
        error: &'static str,
        message: impl Into<String>,
        retry_after: Option<u64>,
        until: Option<i64>,
    ) -> ApiError {
        ApiError {
            retry_after_seconds: retry_after,
            until,
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, error, message)
        }
    }

    /// Maps a remediator's answer; `now` turns `until` into a Retry-After.
    pub fn from_remediate(e: RemediateError, now: i64) -> ApiError {
        match e {
            RemediateError::NotFound(m) => ApiError::not_found(m),
            RemediateError::Refused(m) => ApiError::refused(m),
            RemediateError::NoChange(m) => ApiError::no_change(m),
            RemediateError::OutOfBounds { bound, message } => {
                ApiError::out_of_bounds(&bound, message)
            }
            RemediateError::HeldBack { until, reason } => ApiError::too_many(
                "held_back",
                reason,
                until.map(|u| u64::try_from(u - now).unwrap_or(0).max(1)),
                until,
            ),
            RemediateError::Upstream(m) => ApiError::upstream(m),
            RemediateError::Unavailable(m) => ApiError::unavailable(m),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::Unauthenticated(m) => ApiError::unauthenticated(m),
            AuthError::Upstream(m) => ApiError::upstream(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = self.retry_after_seconds;
        let mut resp = (status, axum::Json(self)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"oomguard\""),
            );
        }
        if let Some(secs) = retry {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}
