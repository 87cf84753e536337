//! The API's one error shape: `{"error": code, "message": …, "field": …}`
//! with the HTTP status that goes with the code. Desk errors map here in
//! one place, so a PATCH and a CLI call fail with the same words.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::desk::DeskError;

/// The wire form of an error; the CLI reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code (`invalid`, `unknown_field`, `not_found`, …).
    pub error: String,
    pub message: String,
    /// The offending field or parameter, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every problem when there are several (the first is `field`/`message`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// On a conflict: the ticket's version now (its ETag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .body.message)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed: errors travel in every handler's `Result`.
    pub body: Box<ErrorBody>,
    /// 401 carries a `WWW-Authenticate` challenge.
    challenge: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: Box::new(ErrorBody {
                error: code.to_owned(),
                message: message.into(),
                field: None,
                errors: Vec::new(),
                current_version: None,
            }),
            challenge: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.body.field = Some(field.into());
        self
    }

    /// A bad value in a request: 400 `invalid`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message).field(field)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized(wrong_token: bool) -> ApiError {
        let (message, challenge) = if wrong_token {
            ("the bearer token is not valid", "Bearer realm=\"ticketd\", error=\"invalid_token\"")
        } else {
            ("this endpoint needs a bearer token (Authorization: Bearer <token>)", "Bearer realm=\"ticketd\"")
        };
        ApiError { challenge: Some(challenge), ..ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message) }
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<DeskError> for ApiError {
    fn from(e: DeskError) -> ApiError {
        let message = e.to_string();
        match e {
            DeskError::NotFound(_) => ApiError::not_found(message),
            DeskError::Invalid(list) => {
                let mut err = ApiError::new(StatusCode::BAD_REQUEST, "invalid", message);
                err.body.field = list.first().map(|e| e.field.to_owned());
                err.body.errors =
                    list.iter().map(|e| FieldError { field: e.field.to_owned(), message: e.message.clone() }).collect();
                err
            }
            DeskError::Conflict { current } => {
                let mut err = ApiError::new(StatusCode::CONFLICT, "conflict", message).field("If-Match");
                err.body.current_version = Some(current);
                err
            }
            DeskError::Store(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", message),
            DeskError::Stopped => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopping", message),
            DeskError::NotLeader { .. } | DeskError::Fenced(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_leader", message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(*self.body)).into_response();
        if let Some(c) = self.challenge {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triage::act::ActError;

    #[test]
    fn desk_errors_keep_their_words_and_fields() {
        let e = ApiError::from(DeskError::Invalid(vec![
            ActError { field: "status", message: "invalid status \"wip\"".into() },
            ActError { field: "tags", message: "a tag cannot be empty".into() },
        ]));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.body.field.as_deref(), Some("status"));
        assert_eq!(e.body.errors.len(), 2);
        assert_eq!(e.body.message, "status: invalid status \"wip\"; tags: a tag cannot be empty");
        let c = ApiError::from(DeskError::Conflict { current: 7 });
        assert_eq!((c.status, c.body.current_version), (StatusCode::CONFLICT, Some(7)));
        assert_eq!(ApiError::from(DeskError::NotFound("ticket 4".into())).status, StatusCode::NOT_FOUND);
        let u = ApiError::unauthorized(true).into_response();
        assert!(u.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Bearer"));
    }
}
