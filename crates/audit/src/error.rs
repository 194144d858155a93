//! The audit service's errors and their gRPC mapping.

use switchyard_proto::common::v1::FieldViolation;
use switchyard_runtime::ErrorCode;

pub type Result<T, E = AuditError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("invalid request: {}", summary(.0))]
    Invalid(Vec<FieldViolation>),
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("the chain head row is missing; the audit schema is not migrated")]
    MissingChainHead,
    #[error("record {0} vanished during retention")]
    MissingRecord(u64),
}

fn summary(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<AuditError> for tonic::Status {
    fn from(error: AuditError) -> Self {
        match error {
            AuditError::Invalid(violations) => {
                let message = summary(&violations);
                ErrorCode::InvalidArgument.status(message, violations)
            }
            AuditError::Database(sea_orm::DbErr::ConnectionAcquire(e)) => {
                tracing::warn!(error = %e, "database unavailable");
                ErrorCode::Unavailable.status("database unavailable, retry later", vec![])
            }
            other => {
                tracing::error!(error = %other, "internal error");
                ErrorCode::Internal.status("internal error", vec![])
            }
        }
    }
}
