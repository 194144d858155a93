//! The monitoring service's error type and its mapping onto gRPC statuses (through the shared
//! [`ErrorCode`]).

use switchyard_runtime::ErrorCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::Database(_) => ErrorCode::Internal,
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
