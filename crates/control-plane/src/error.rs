//! The control-plane's error type and its mapping onto gRPC statuses (through the shared
//! [`ErrorCode`], which the gateway maps onto HTTP).

use switchyard_proto::common::v1::FieldViolation;
use switchyard_runtime::ErrorCode;
use switchyard_runtime::auth::Denial;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", .0.message())]
    Denied(Denial),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// Malformed request: a field is missing or has the wrong form.
    #[error("{message}")]
    InvalidArgument {
        message: String,
        violations: Vec<FieldViolation>,
    },
    /// Well-formed but refused on its content (a workflow that does not validate, a dataset
    /// gate that fails).
    #[error("{message}")]
    Unprocessable {
        message: String,
        violations: Vec<FieldViolation>,
    },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: &str, reason: &str, message: impl Into<String>) -> Error {
        let message = message.into();
        Error::InvalidArgument {
            violations: vec![switchyard_runtime::error::violation(
                field,
                reason,
                message.clone(),
            )],
            message,
        }
    }

    pub fn not_found(kind: &str, id: &str) -> Error {
        Error::NotFound(format!("{kind} `{id}` not found"))
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Denied(denial) => denial.code(),
            Error::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Error::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            Error::Unprocessable { .. } => ErrorCode::Unprocessable,
            Error::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            Error::Database(_) | Error::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> tonic::Status {
        let code = error.code();
        if code == ErrorCode::Internal {
            // Details stay in the log; the caller gets a generic message.
            tracing::error!(%error, "request failed");
            return code.status("internal error", Vec::new());
        }
        let message = error.to_string();
        let violations = match error {
            Error::InvalidArgument { violations, .. } | Error::Unprocessable { violations, .. } => {
                violations
            }
            _ => Vec::new(),
        };
        code.status(message, violations)
    }
}

/// Unique-constraint violations become `AlreadyExists`; everything else stays a database error.
pub fn conflict_or(error: sea_orm::DbErr, message: impl FnOnce() -> String) -> Error {
    match error.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::AlreadyExists(message()),
        _ => Error::Database(error),
    }
}
