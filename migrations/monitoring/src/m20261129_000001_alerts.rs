//! Alert rules, alerts and their webhook notifications.
//!
//! `alert_rules`: a project's conditions (kind, threshold, window, webhooks as a JSON array);
//! names are unique per project.
//!
//! `alerts`: one row per raised alert. `dedupe_key` names the condition (rule id and the
//! condition's subject); the partial unique index `alerts_open_dedupe` lets a condition have at
//! most one open (firing or acknowledged) alert at a time, on PostgreSQL and SQLite alike, so
//! two evaluators racing to fire the same condition cannot both succeed. Resolved alerts keep
//! their key and stay out of the index. Listing reads by id (UUIDv7 text sorts by creation),
//! retention by `resolved_at`.
//!
//! `alert_notifications`: the webhook outbox. A firing or resolution queues one row per
//! webhook in the same transaction as the alert change; the deliverer claims due rows by
//! `next_attempt_at` (a partial index over undelivered rows keeps that cheap), and records
//! `delivered_at` or, after the last attempt, `failed_at`.

use sea_orm_migration::prelude::*;
use switchyard_runtime::migrate::columns::{
    boolean, id, id_ref, integer, serial, text, timestamp, timestamp_null,
};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000001_alerts"
    }
}

#[derive(DeriveIden)]
enum AlertRules {
    Table,
    Id,
    OrgId,
    ProjectId,
    Name,
    Kind,
    Threshold,
    WindowMs,
    Webhooks,
    Enabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Alerts {
    Table,
    Id,
    RuleId,
    OrgId,
    ProjectId,
    Kind,
    State,
    DedupeKey,
    Message,
    FiredAt,
    AcknowledgedAt,
    AcknowledgedBy,
    ResolvedAt,
    ResolvedBy,
}

#[derive(DeriveIden)]
enum AlertNotifications {
    Table,
    Id,
    AlertId,
    Url,
    Event,
    Payload,
    Attempts,
    NextAttemptAt,
    DeliveredAt,
    FailedAt,
    LastError,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use AlertRules as R;
        manager
            .create_table(
                Table::create()
                    .table(R::Table)
                    .col(id(R::Id))
                    .col(id_ref(R::OrgId))
                    .col(id_ref(R::ProjectId))
                    .col(text(R::Name))
                    // failure_rate | dead_letter_count | stuck_tasks | agent_pool_empty |
                    // api_check_failing
                    .col(text(R::Kind))
                    .col(
                        ColumnDef::new(R::Threshold)
                            .double()
                            .not_null()
                            .default(0.0),
                    )
                    .col(ColumnDef::new(R::WindowMs).big_integer().not_null())
                    // JSON array of URL strings.
                    .col(text(R::Webhooks))
                    .col(boolean(R::Enabled))
                    .col(timestamp(R::CreatedAt))
                    .col(timestamp(R::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("alert_rules_name")
                    .table(R::Table)
                    .col(R::ProjectId)
                    .col(R::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        use Alerts as A;
        manager
            .create_table(
                Table::create()
                    .table(A::Table)
                    .col(id(A::Id))
                    .col(id_ref(A::RuleId))
                    .col(id_ref(A::OrgId))
                    .col(id_ref(A::ProjectId))
                    .col(text(A::Kind))
                    // firing | acknowledged | resolved
                    .col(text(A::State))
                    .col(text(A::DedupeKey))
                    .col(text(A::Message))
                    .col(timestamp(A::FiredAt))
                    .col(timestamp_null(A::AcknowledgedAt))
                    .col(text(A::AcknowledgedBy))
                    .col(timestamp_null(A::ResolvedAt))
                    // `auto` or the actor id.
                    .col(text(A::ResolvedBy))
                    .to_owned(),
            )
            .await?;
        for index in [
            Index::create()
                .name("alerts_project")
                .table(A::Table)
                .col(A::ProjectId)
                .col(A::Id)
                .to_owned(),
            Index::create()
                .name("alerts_rule")
                .table(A::Table)
                .col(A::RuleId)
                .col(A::State)
                .to_owned(),
            Index::create()
                .name("alerts_resolved")
                .table(A::Table)
                .col(A::ResolvedAt)
                .to_owned(),
        ] {
            manager.create_index(index).await?;
        }
        let conn = manager.get_connection();
        conn.execute_unprepared(
            "CREATE UNIQUE INDEX alerts_open_dedupe ON alerts (dedupe_key) \
             WHERE state <> 'resolved'",
        )
        .await?;

        use AlertNotifications as N;
        manager
            .create_table(
                Table::create()
                    .table(N::Table)
                    .col(serial(N::Id))
                    .col(id_ref(N::AlertId))
                    .col(text(N::Url))
                    // firing | resolved
                    .col(text(N::Event))
                    .col(text(N::Payload))
                    .col(integer(N::Attempts))
                    .col(timestamp(N::NextAttemptAt))
                    .col(timestamp_null(N::DeliveredAt))
                    .col(timestamp_null(N::FailedAt))
                    .col(text(N::LastError))
                    .col(timestamp(N::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("alert_notifications_alert")
                    .table(N::Table)
                    .col(N::AlertId)
                    .to_owned(),
            )
            .await?;
        conn.execute_unprepared(
            "CREATE INDEX alert_notifications_due ON alert_notifications (next_attempt_at) \
             WHERE delivered_at IS NULL AND failed_at IS NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AlertNotifications::Table.into_iden(),
            Alerts::Table.into_iden(),
            AlertRules::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
