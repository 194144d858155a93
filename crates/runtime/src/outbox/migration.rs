//! Migration creating `outbox_events`; every emitting service lists it among its own.

use sea_orm_migration::prelude::*;

pub struct CreateOutbox;

impl MigrationName for CreateOutbox {
    fn name(&self) -> &str {
        "m20261122_000001_create_outbox"
    }
}

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    Id,
    EventId,
    Destination,
    Payload,
    CreatedAt,
    Attempts,
    LastError,
    DeliveredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOutbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OutboxEvents::Table)
                    .col(
                        ColumnDef::new(OutboxEvents::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(OutboxEvents::EventId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OutboxEvents::Destination)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(OutboxEvents::Payload).blob().not_null())
                    .col(
                        ColumnDef::new(OutboxEvents::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OutboxEvents::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(OutboxEvents::LastError).text().null())
                    .col(
                        ColumnDef::new(OutboxEvents::DeliveredAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        // The relay only ever reads pending rows: a partial index keeps that read small however
        // many delivered rows wait for cleanup (PostgreSQL and SQLite both support it).
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX outbox_events_pending ON outbox_events (destination, id) \
                 WHERE delivered_at IS NULL",
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX outbox_events_delivered ON outbox_events (delivered_at) \
                 WHERE delivered_at IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OutboxEvents::Table).to_owned())
            .await
    }
}
