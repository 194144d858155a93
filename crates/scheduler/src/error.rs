//! The scheduler's error type and its mapping onto gRPC statuses (through the shared
//! [`ErrorCode`]).

use switchyard_runtime::ErrorCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// A stale lease (fencing token), a task no longer leased to the caller, a move the
    /// state machine refuses.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            Error::Database(_) | Error::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> tonic::Status {
        let code = error.code();
        if code == ErrorCode::Internal {
            tracing::error!(%error, "request failed");
            return code.status("internal error", Vec::new());
        }
        code.status(error.to_string(), Vec::new())
    }
}
