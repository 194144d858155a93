//! End-to-end tests: real services on loopback ports against PostgreSQL (a fresh schema per
//! test) and SQLite. One binary, one module per concern, to keep link time down.

#![allow(clippy::unwrap_used)]

mod audit;
mod engine;
mod gateway;
mod grpc_server;
mod maintenance;
mod migrations;
mod outbox;
mod pipeline;
mod processes;
mod runs;
mod suites;
