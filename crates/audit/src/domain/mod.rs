//! Pure audit logic, no I/O: the record as it is hashed, the hash chain and its verification,
//! and the validation of incoming records.

pub mod chain;
pub mod record;
