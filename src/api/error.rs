//! The API's error responses: `{"errors":[{"field", "code", "message"}]}`, one entry per
//! invalid field.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

/// One problem with a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field (`market_location`, `filter[status][eq]`, …), `null` for the request as a
    /// whole.
    pub field: Option<String>,
    /// A stable code (`required`, `invalid`, `module_2_exclusive`, …).
    pub code: String,
    /// What is wrong, for people.
    pub message: String,
    /// Where in the field's value, when the value is a text with places in it (the segment,
    /// element and component of an EDIFACT message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<serde_json::Value>,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: &str, code: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: Some(field.to_string()),
            code: code.to_string(),
            message: message.into(),
            position: None,
        }
    }

    /// The same problem at `position` in the field's value.
    pub fn at(mut self, position: serde_json::Value) -> FieldError {
        self.position = Some(position);
        self
    }
}

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The problems.
    pub errors: Vec<FieldError>,
}

impl ApiError {
    /// `400` with these field errors.
    pub fn invalid(errors: Vec<FieldError>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            errors,
        }
    }

    /// One problem not tied to a field.
    pub fn general(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            errors: vec![FieldError {
                field: None,
                code: code.to_string(),
                message: message.into(),
                position: None,
            }],
        }
    }

    /// `422`: the request is well formed, but its content is refused (one entry per problem).
    pub fn unprocessable(errors: Vec<FieldError>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            errors,
        }
    }

    /// `404` for `what` with `id`.
    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::general(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} {id} does not exist"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match &e {
            StoreError::DuplicateMeterOrder { .. } => ApiError {
                status: StatusCode::CONFLICT,
                errors: vec![FieldError::new(
                    "subscription",
                    "second_meter_order",
                    e.to_string(),
                )],
            },
            StoreError::VersionConflict { .. } => {
                ApiError::general(StatusCode::CONFLICT, "concurrent_change", e.to_string())
            }
            StoreError::NotFound { .. } => {
                ApiError::general(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            _ => {
                // The driver's text (SQL, encodings, index internals) stays in the log; the
                // client gets a reference to find it there (issue 15 defect 4).
                let reference = crate::ids::new_id("err", crate::clock::Clock::system().now());
                tracing::error!(error = %e, %reference, "store error in the API");
                let status = if e.is_transient() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                ApiError::general(
                    status,
                    "store_error",
                    format!(
                        "the store could not complete the request; the gateway's log has the \
                         details under {reference}"
                    ),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "errors": self.errors });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("header value"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 defect 4: PostgreSQL's `invalid byte sequence for encoding "UTF8": 0x00` and
    /// `index row size … exceeds btree` reached the client in a 500.
    #[test]
    fn regression_store_errors_never_show_the_database_text() {
        let e = StoreError::Query {
            operation: "reading a reduction",
            source: sqlx::Error::Protocol(
                "invalid byte sequence for encoding \"UTF8\": 0x00".into(),
            ),
        };
        let api = ApiError::from(e);
        assert!(api.status.is_server_error());
        let message = &api.errors[0].message;
        assert!(
            !message.contains("UTF8") && !message.contains("reading"),
            "{message}"
        );
        assert!(message.contains("err_"), "{message}");
    }
}
