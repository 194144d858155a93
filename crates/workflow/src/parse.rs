//! From text to a [`Definition`]: JSON or YAML, with the path of the first field that does not
//! fit the format (`nodes[1].shards: invalid type ...`).

use crate::Definition;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// Why a text is not a definition at all (as opposed to a definition with problems, which
/// [`crate::validate`] reports).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON / YAML: the syntax is broken.
    #[error("not valid {}: {message}", if *line > 0 { format!("syntax at line {line}") } else { "syntax".to_owned() })]
    Syntax { line: usize, message: String },
    /// Well-formed, but a field has the wrong shape (unknown field, wrong type, missing).
    #[error("{path}: {message}")]
    Shape { path: String, message: String },
}

/// A parsed definition and its canonical JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub definition: Definition,
    pub canonical_json: String,
}

pub fn parse(text: &str, format: Format) -> Result<Parsed, ParseError> {
    let value: serde_json::Value = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| ParseError::Syntax {
            line: e.line(),
            message: e.to_string(),
        })?,
        Format::Yaml => serde_saphyr::from_str(text).map_err(|e| ParseError::Syntax {
            line: 0,
            message: e.to_string(),
        })?,
    };
    let definition: Definition =
        serde_path_to_error::deserialize(value).map_err(|e| ParseError::Shape {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
    let canonical_json = definition.canonical_json();
    Ok(Parsed {
        definition,
        canonical_json,
    })
}
