//! End-to-end tests: real services on loopback ports against PostgreSQL (a fresh schema per
//! test) and SQLite. One binary, one module per concern, to keep link time down.

#![allow(clippy::unwrap_used)]

mod artifact_retention;
mod audit;
mod engine;
mod gateway;
mod grpc_server;
mod invariants;
mod limits;
mod loops;
mod maintenance;
mod migrations;
mod monitoring;
mod monitoring_retention;
mod outbox;
mod pipeline;
mod processes;
mod race;
mod runs;
mod sse;
mod suites;
mod task_history;
mod timeouts;
