//! API checks and API usage.
//!
//! `api_checks` holds each registered probe target with its latest state (so health reads one
//! row per check) and `next_probe_at`, which the prober claims due checks by (an index on it
//! keeps the claim cheap). `api_check_probes` keeps one small row per probe for the 24-hour
//! availability figure; rows older than that are deleted by the checks' retention.
//!
//! `api_usage` holds per-minute buckets per (route, method) reported by the gateway: request
//! and error counts and a latency histogram with fixed bounds, one column per bucket
//! (`b0`..`b14`, bounds in `domain::usage`). Fixed columns let a report be added with one
//! portable `ON CONFLICT ... DO UPDATE SET b0 = api_usage.b0 + excluded.b0, ...`, so
//! concurrent reports for the same minute never lose counts, on PostgreSQL and SQLite alike.

use sea_orm_migration::prelude::*;
use switchyard_runtime::migrate::columns::{
    big_integer, boolean, id, id_ref, serial, text, timestamp, timestamp_null,
};

pub struct Migration;

/// Buckets of the usage latency histogram (14 bounds and the overflow).
pub const USAGE_BUCKETS: usize = 15;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000002_api_checks"
    }
}

#[derive(DeriveIden)]
enum ApiChecks {
    Table,
    Id,
    OrgId,
    ProjectId,
    Name,
    Protocol,
    Target,
    IntervalMs,
    TimeoutMs,
    CreatedAt,
    UpdatedAt,
    NextProbeAt,
    LastCheckedAt,
    LastOk,
    LastLatencyMs,
    LastError,
}

#[derive(DeriveIden)]
enum ApiCheckProbes {
    Table,
    Id,
    CheckId,
    ProbedAt,
    Ok,
    LatencyMs,
}

#[derive(DeriveIden)]
enum ApiUsage {
    Table,
    Id,
    Minute,
    Route,
    Method,
    Requests,
    Errors,
}

fn big_integer_null<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).big_integer().null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ApiChecks as C;
        manager
            .create_table(
                Table::create()
                    .table(C::Table)
                    .col(id(C::Id))
                    .col(id_ref(C::OrgId))
                    .col(id_ref(C::ProjectId))
                    .col(text(C::Name))
                    // http | grpc
                    .col(text(C::Protocol))
                    .col(text(C::Target))
                    .col(big_integer(C::IntervalMs))
                    .col(big_integer(C::TimeoutMs))
                    .col(timestamp(C::CreatedAt))
                    .col(timestamp(C::UpdatedAt))
                    .col(timestamp(C::NextProbeAt))
                    .col(timestamp_null(C::LastCheckedAt))
                    .col(boolean(C::LastOk))
                    .col(big_integer_null(C::LastLatencyMs))
                    .col(text(C::LastError))
                    .to_owned(),
            )
            .await?;
        for index in [
            Index::create()
                .name("api_checks_name")
                .table(C::Table)
                .col(C::ProjectId)
                .col(C::Name)
                .unique()
                .to_owned(),
            Index::create()
                .name("api_checks_due")
                .table(C::Table)
                .col(C::NextProbeAt)
                .to_owned(),
        ] {
            manager.create_index(index).await?;
        }
        use ApiCheckProbes as P;
        manager
            .create_table(
                Table::create()
                    .table(P::Table)
                    .col(serial(P::Id))
                    .col(id_ref(P::CheckId))
                    .col(timestamp(P::ProbedAt))
                    .col(boolean(P::Ok))
                    .col(big_integer(P::LatencyMs))
                    .to_owned(),
            )
            .await?;
        for index in [
            Index::create()
                .name("api_check_probes_check")
                .table(P::Table)
                .col(P::CheckId)
                .col(P::ProbedAt)
                .to_owned(),
            Index::create()
                .name("api_check_probes_time")
                .table(P::Table)
                .col(P::ProbedAt)
                .to_owned(),
        ] {
            manager.create_index(index).await?;
        }
        use ApiUsage as U;
        let mut usage = Table::create()
            .table(U::Table)
            .col(serial(U::Id))
            .col(timestamp(U::Minute))
            .col(text(U::Route))
            .col(text(U::Method))
            .col(big_integer(U::Requests))
            .col(big_integer(U::Errors))
            .to_owned();
        for bucket in 0..USAGE_BUCKETS {
            usage.col(big_integer(Alias::new(format!("b{bucket}"))));
        }
        manager.create_table(usage).await?;
        manager
            .create_index(
                Index::create()
                    .name("api_usage_minute")
                    .table(U::Table)
                    .col(U::Minute)
                    .col(U::Route)
                    .col(U::Method)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ApiUsage::Table.into_iden(),
            ApiCheckProbes::Table.into_iden(),
            ApiChecks::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
