//! Cursor pagination over time-ordered ids: newest first, the cursor is the last id returned.

use switchyard_proto::common::v1::{PageRequest, PageResponse};

use crate::error::{Error, Result};

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub limit: u64,
    /// Items strictly older than this id.
    pub before: Option<String>,
}

impl Page {
    pub fn from_proto(request: Option<&PageRequest>) -> Result<Page> {
        let Some(request) = request else {
            return Ok(Page {
                limit: DEFAULT_LIMIT,
                before: None,
            });
        };
        let limit = match u64::from(request.limit) {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let before = if request.cursor.is_empty() {
            None
        } else if uuid::Uuid::parse_str(&request.cursor).is_ok() {
            Some(request.cursor.clone())
        } else {
            return Err(Error::invalid(
                "cursor",
                "invalid_cursor",
                "cursor is not one this API returned",
            ));
        };
        Ok(Page { limit, before })
    }

    /// Trims the extra row fetched to detect a next page and returns the page response.
    pub fn finish<T>(&self, rows: &mut Vec<T>, id: impl Fn(&T) -> &str) -> PageResponse {
        let next_cursor = if rows.len() as u64 > self.limit {
            rows.truncate(self.limit as usize);
            rows.last().map(|r| id(r).to_owned()).unwrap_or_default()
        } else {
            String::new()
        };
        PageResponse { next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_and_clamp_and_cursors_are_checked() {
        let page = |limit, cursor: &str| {
            Page::from_proto(Some(&PageRequest {
                limit,
                cursor: cursor.into(),
            }))
        };
        assert_eq!(page(0, "").map(|p| p.limit).ok(), Some(50));
        assert_eq!(page(10_000, "").map(|p| p.limit).ok(), Some(500));
        assert!(page(5, "garbage").is_err());
        let mut rows = vec!["c", "b", "a"];
        let p = Page {
            limit: 2,
            before: None,
        };
        assert_eq!(p.finish(&mut rows, |r| r).next_cursor, "b");
        assert_eq!(rows, vec!["c", "b"]);
    }
}
