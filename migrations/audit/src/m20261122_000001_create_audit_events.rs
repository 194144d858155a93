use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000001_create_audit_events"
    }
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Seq,
    EventId,
    Source,
    ActorType,
    ActorId,
    ActorDisplayName,
    Action,
    ResourceType,
    ResourceId,
    OrgId,
    ProjectId,
    Outcome,
    DetailsJson,
    ClientIp,
    UserAgent,
    RequestId,
    TraceId,
    OccurredAt,
    RecordedAt,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditChainHead {
    Table,
    Id,
    LastSeq,
    LastHash,
}

#[derive(DeriveIden)]
enum AuditCheckpoints {
    Table,
    Seq,
    Hash,
    Deleted,
    CreatedAt,
}

fn text(name: AuditEvents) -> ColumnDef {
    ColumnDef::new(name)
        .text()
        .not_null()
        .default("")
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(
                        ColumnDef::new(AuditEvents::Seq)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::EventId)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(text(AuditEvents::Source))
                    .col(text(AuditEvents::ActorType))
                    .col(text(AuditEvents::ActorId))
                    .col(text(AuditEvents::ActorDisplayName))
                    .col(text(AuditEvents::Action))
                    .col(text(AuditEvents::ResourceType))
                    .col(text(AuditEvents::ResourceId))
                    .col(text(AuditEvents::OrgId))
                    .col(text(AuditEvents::ProjectId))
                    .col(text(AuditEvents::Outcome))
                    .col(text(AuditEvents::DetailsJson))
                    .col(text(AuditEvents::ClientIp))
                    .col(text(AuditEvents::UserAgent))
                    .col(text(AuditEvents::RequestId))
                    .col(text(AuditEvents::TraceId))
                    .col(
                        ColumnDef::new(AuditEvents::OccurredAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::RecordedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditEvents::PrevHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditEvents::Hash).string_len(64).not_null())
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            (
                "audit_events_actor",
                vec![AuditEvents::ActorId, AuditEvents::Seq],
            ),
            (
                "audit_events_action",
                vec![AuditEvents::Action, AuditEvents::Seq],
            ),
            (
                "audit_events_resource",
                vec![
                    AuditEvents::ResourceType,
                    AuditEvents::ResourceId,
                    AuditEvents::Seq,
                ],
            ),
            (
                "audit_events_tenant",
                vec![AuditEvents::OrgId, AuditEvents::ProjectId, AuditEvents::Seq],
            ),
            ("audit_events_occurred", vec![AuditEvents::OccurredAt]),
        ] {
            let mut index = Index::create();
            index.name(name).table(AuditEvents::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(AuditChainHead::Table)
                    .col(
                        ColumnDef::new(AuditChainHead::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AuditChainHead::LastSeq)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditChainHead::LastHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(AuditChainHead::Table)
                    .columns([
                        AuditChainHead::Id,
                        AuditChainHead::LastSeq,
                        AuditChainHead::LastHash,
                    ])
                    .values_panic([1.into(), 0i64.into(), "0".repeat(64).into()])
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditCheckpoints::Table)
                    .col(
                        ColumnDef::new(AuditCheckpoints::Seq)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AuditCheckpoints::Hash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditCheckpoints::Deleted)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditCheckpoints::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditCheckpoints::Table.into_iden(),
            AuditChainHead::Table.into_iden(),
            AuditEvents::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
