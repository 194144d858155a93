//! Workflow definitions: the graph format of API.md ("Workflow definition"), parsed from JSON
//! or YAML, validated with every problem listed, and rendered as canonical JSON (the form that
//! is stored, pinned by runs and handed to the scheduler).
//!
//! Pure logic, no I/O: control-plane validates with it and the scheduler reads pinned
//! definitions with it, so both sides agree on what a definition means.

mod definition;
mod parse;
mod validate;

pub use definition::{Definition, LoopBack, LoopCondition, Node, RetryPolicy};
pub use parse::{Format, ParseError, Parsed, parse};
pub use validate::{MAX_TIMEOUT_S, Problem, validate};
