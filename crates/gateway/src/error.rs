//! The JSON error body of API.md and the mapping from gRPC statuses onto it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use switchyard_runtime::ErrorCode;
use switchyard_runtime::error::decode_details;
use utoipa::ToSchema;

/// `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    /// Stable snake_case code, e.g. `invalid_argument`.
    pub code: String,
    pub message: String,
    /// One entry per problem (e.g. every problem of a workflow definition).
    pub details: Vec<ErrorDetail>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub field: String,
    pub reason: String,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub details: Vec<ErrorDetail>,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: code.as_str().to_owned(),
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    pub fn invalid(field: &str, reason: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        let mut error = ApiError::new(ErrorCode::InvalidArgument, message.clone());
        error.details.push(ErrorDetail {
            field: field.to_owned(),
            reason: reason.to_owned(),
            message,
        });
        error
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "payload_too_large".into(),
            message: format!("the request body is larger than {limit} bytes"),
            details: Vec::new(),
            retry_after: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> ApiError {
        let code = ErrorCode::from_status(&status);
        let details: Vec<ErrorDetail> = decode_details(&status)
            .map(|d| {
                d.violations
                    .into_iter()
                    .map(|v| ErrorDetail {
                        field: v.field,
                        reason: v.reason,
                        message: v.message,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let message = match status.code() {
            // Transport failures carry hyper's words; say what it means to the caller.
            tonic::Code::Unavailable if details.is_empty() => {
                tracing::warn!(message = status.message(), "upstream unavailable");
                "a Switchyard service is unavailable, try again shortly".to_owned()
            }
            tonic::Code::Internal | tonic::Code::Unknown => {
                tracing::error!(message = status.message(), "upstream failed");
                "internal error".to_owned()
            }
            _ => status.message().to_owned(),
        };
        let mut error = ApiError::new(code, message);
        error.details = details;
        error
    }
}

impl ApiError {
    /// The JSON body (also the data of an event stream's `error` event).
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorObject {
                code: self.code.clone(),
                message: self.message.clone(),
                details: self.details.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_http_with_every_violation() {
        let status = ErrorCode::Unprocessable.status(
            "bad workflow",
            vec![
                switchyard_runtime::error::violation("nodes[0].shards", "zero_shards", "x"),
                switchyard_runtime::error::violation(
                    "nodes[1].needs[0]",
                    "unknown_dependency",
                    "y",
                ),
            ],
        );
        let error = ApiError::from(status);
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.code, "unprocessable");
        assert_eq!(error.details.len(), 2);
        let hidden = ApiError::from(tonic::Status::internal("db password is hunter2"));
        assert_eq!(hidden.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!hidden.message.contains("hunter2"));
        let down = ApiError::from(tonic::Status::unavailable("tcp connect error"));
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
