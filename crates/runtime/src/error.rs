//! The runtime's own error type, and the one error-code enum that every service and the
//! gateway use to map failures to both gRPC and HTTP.

use std::net::SocketAddr;

use prost::Message;
use switchyard_proto::common::v1::{ErrorDetails, FieldViolation};

/// Failures of the shared runtime (startup, infrastructure). Domain errors live in each
/// service crate and convert into [`tonic::Status`] through [`ErrorCode`].
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("database unreachable: host {host}, database {database}: {cause}")]
    DatabaseUnavailable {
        host: String,
        database: String,
        cause: String,
    },
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("migration failed for schema {schema}: {cause}")]
    Migration { schema: String, cause: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("telemetry setup failed: {0}")]
    Telemetry(String),
    #[error("gRPC transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("redis error: {0}")]
    Redis(String),
}

impl RuntimeError {
    /// Process exit code for a startup failure (sysexits.h): bad config is a usage error,
    /// an unreachable dependency is "service unavailable".
    pub fn exit_code(&self) -> i32 {
        match self {
            RuntimeError::Config(_) => 64,
            RuntimeError::DatabaseUnavailable { .. } | RuntimeError::Redis(_) => 69,
            RuntimeError::Bind { .. } => 71,
            _ => 70,
        }
    }
}

/// Stable, transport-independent error codes. Each knows its gRPC code, its HTTP status and
/// its snake_case name (the `code` of the HTTP error body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidArgument,
    /// Well-formed but semantically invalid (e.g. a workflow that does not validate).
    Unprocessable,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
    DeadlineExceeded,
    Unimplemented,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::InvalidArgument,
        ErrorCode::Unprocessable,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::FailedPrecondition,
        ErrorCode::ResourceExhausted,
        ErrorCode::Unavailable,
        ErrorCode::DeadlineExceeded,
        ErrorCode::Unimplemented,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unprocessable => "unprocessable",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::FailedPrecondition => "failed_precondition",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::Unimplemented => "unimplemented",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorCode::InvalidArgument | ErrorCode::Unprocessable => tonic::Code::InvalidArgument,
            ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::AlreadyExists => tonic::Code::AlreadyExists,
            ErrorCode::FailedPrecondition => tonic::Code::FailedPrecondition,
            ErrorCode::ResourceExhausted => tonic::Code::ResourceExhausted,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            ErrorCode::Unimplemented => tonic::Code::Unimplemented,
            ErrorCode::Internal => tonic::Code::Internal,
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::AlreadyExists | ErrorCode::FailedPrecondition => 409,
            ErrorCode::Unprocessable => 422,
            ErrorCode::ResourceExhausted => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::DeadlineExceeded => 504,
            ErrorCode::Unimplemented => 501,
            ErrorCode::Internal => 500,
        }
    }

    pub fn parse(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The code a gRPC status stands for: the `ErrorDetails.code` a Switchyard service put in
    /// it when present, otherwise the closest match of the bare gRPC code.
    pub fn from_status(status: &tonic::Status) -> ErrorCode {
        if let Some(code) = decode_details(status).and_then(|d| ErrorCode::parse(&d.code)) {
            return code;
        }
        match status.code() {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => ErrorCode::InvalidArgument,
            tonic::Code::Unauthenticated => ErrorCode::Unauthenticated,
            tonic::Code::PermissionDenied => ErrorCode::PermissionDenied,
            tonic::Code::NotFound => ErrorCode::NotFound,
            tonic::Code::AlreadyExists | tonic::Code::Aborted => ErrorCode::AlreadyExists,
            tonic::Code::FailedPrecondition => ErrorCode::FailedPrecondition,
            tonic::Code::ResourceExhausted => ErrorCode::ResourceExhausted,
            tonic::Code::Unavailable => ErrorCode::Unavailable,
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => ErrorCode::DeadlineExceeded,
            tonic::Code::Unimplemented => ErrorCode::Unimplemented,
            _ => ErrorCode::Internal,
        }
    }

    /// A status carrying this code, the message, and every violation in its details.
    pub fn status(
        self,
        message: impl Into<String>,
        violations: Vec<FieldViolation>,
    ) -> tonic::Status {
        let details = ErrorDetails {
            code: self.as_str().to_owned(),
            violations,
        };
        tonic::Status::with_details(self.grpc_code(), message, details.encode_to_vec().into())
    }
}

/// The structured details a Switchyard service attached to a status, if any.
pub fn decode_details(status: &tonic::Status) -> Option<ErrorDetails> {
    if status.details().is_empty() {
        return None;
    }
    ErrorDetails::decode(status.details()).ok()
}

/// Shorthand for a single-field violation.
pub fn violation(field: &str, reason: &str, message: impl Into<String>) -> FieldViolation {
    FieldViolation {
        field: field.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_a_status() {
        for code in ErrorCode::ALL {
            let status = code.status("boom", vec![violation("a.b", "bad", "a.b is bad")]);
            assert_eq!(ErrorCode::from_status(&status), code);
            assert_eq!(status.code(), code.grpc_code());
            let details = decode_details(&status).expect("details present");
            assert_eq!(details.violations.len(), 1);
            assert_eq!(details.violations[0].field, "a.b");
        }
    }

    #[test]
    fn unprocessable_is_422_over_invalid_argument() {
        assert_eq!(ErrorCode::Unprocessable.http_status(), 422);
        assert_eq!(
            ErrorCode::Unprocessable.grpc_code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(ErrorCode::InvalidArgument.http_status(), 400);
    }

    #[test]
    fn bare_statuses_map_by_grpc_code() {
        assert_eq!(
            ErrorCode::from_status(&tonic::Status::not_found("x")),
            ErrorCode::NotFound
        );
        assert_eq!(
            ErrorCode::from_status(&tonic::Status::unknown("x")),
            ErrorCode::Internal
        );
    }
}
