//! Migration creating `inbox_events`; every consuming service lists it among its own.

use sea_orm_migration::prelude::*;

use crate::migrate::columns::{text, timestamp};

pub struct CreateInbox;

impl MigrationName for CreateInbox {
    fn name(&self) -> &str {
        "m20261123_000000_create_inbox"
    }
}

#[derive(DeriveIden)]
enum InboxEvents {
    Table,
    EventId,
    Source,
    ReceivedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateInbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(InboxEvents::Table)
                    .col(
                        ColumnDef::new(InboxEvents::EventId)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(text(InboxEvents::Source))
                    .col(timestamp(InboxEvents::ReceivedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(InboxEvents::Table).to_owned())
            .await
    }
}
