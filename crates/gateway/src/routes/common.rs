//! Shapes shared by the route modules: lists, pages, timestamps.

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use switchyard_proto::common::v1::{PageRequest, PageResponse};
use utoipa::{IntoParams, ToSchema};

/// `{"items": [...], "next_cursor": "…" | null}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    pub items: Vec<T>,
    /// Pass as `?cursor=` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    pub fn new(items: Vec<T>, page: Option<PageResponse>) -> List<T> {
        List {
            items,
            next_cursor: page.map(|p| p.next_cursor).filter(|c| !c.is_empty()),
        }
    }
}

/// `?limit=` (default 50, max 500) and `?cursor=`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn to_proto(&self) -> PageRequest {
        PageRequest {
            limit: self.limit.unwrap_or(0),
            cursor: self.cursor.clone().unwrap_or_default(),
        }
    }
}

/// RFC 3339 UTC with a `Z`.
pub fn time(ts: Option<&prost_types::Timestamp>) -> Option<String> {
    ts.and_then(switchyard_runtime::time::from_proto)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

pub fn parse_time(
    field: &str,
    text: &str,
) -> Result<prost_types::Timestamp, crate::error::ApiError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| switchyard_runtime::time::to_proto(t.with_timezone(&chrono::Utc)))
        .map_err(|_| {
            crate::error::ApiError::invalid(
                field,
                "invalid_time",
                format!("{field} must be an RFC 3339 timestamp, e.g. 2026-01-31T12:00:00Z"),
            )
        })
}

/// A JSON text from a service as a JSON value (null when empty).
pub fn json_value(text: &str) -> serde_json::Value {
    if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
    }
}
