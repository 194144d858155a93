//! End-to-end tests: real services on loopback ports against PostgreSQL (a fresh schema per
//! test) and SQLite. One binary, one module per concern, to keep link time down.

#![allow(clippy::unwrap_used)]

mod active_tasks;
mod alerts;
mod alerts_store;
mod api_checks;
mod api_checks_store;
mod artifact_retention;
mod audit;
mod dashboard;
mod diagnosis;
mod engine;
mod gateway;
mod grpc_server;
mod history_upsert;
mod invariants;
mod leased_steps;
mod limits;
mod loops;
mod maintenance;
mod migrations;
mod monitoring;
mod monitoring_outage;
mod monitoring_retention;
mod outbox;
mod pipeline;
mod processes;
mod race;
mod retry_statistics;
mod runs;
mod sse;
mod suites;
mod sweeper_plans;
mod task_history;
mod timeouts;
mod vacuum;
