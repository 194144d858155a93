//! Workflows with their immutable versions, and runs.

use sea_orm_migration::prelude::*;

use switchyard_runtime::migrate::columns::{id, id_ref, integer, text, timestamp, timestamp_null};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000002_create_workflows_runs"
    }
}

#[derive(DeriveIden)]
enum Workflows {
    Table,
    Id,
    ProjectId,
    Name,
    LatestVersion,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum WorkflowVersions {
    Table,
    WorkflowId,
    Version,
    DefinitionJson,
    Digest,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    Id,
    OrgId,
    ProjectId,
    Workflow,
    WorkflowId,
    Version,
    Status,
    Environment,
    Suite,
    ParamsJson,
    InitialStateJson,
    CurrentStateJson,
    FinalStateJson,
    ShardsJson,
    CoverageJson,
    Reason,
    IdempotencyKey,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    FinishedAt,
    CancelRequestedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Workflows::Table)
                    .col(id(Workflows::Id))
                    .col(id_ref(Workflows::ProjectId))
                    .col(text(Workflows::Name))
                    .col(integer(Workflows::LatestVersion))
                    .col(timestamp(Workflows::CreatedAt))
                    .col(timestamp(Workflows::UpdatedAt))
                    .col(timestamp_null(Workflows::DeletedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("workflows_project_name")
                    .table(Workflows::Table)
                    .col(Workflows::ProjectId)
                    .col(Workflows::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WorkflowVersions::Table)
                    .col(id_ref(WorkflowVersions::WorkflowId))
                    .col(integer(WorkflowVersions::Version))
                    .col(text(WorkflowVersions::DefinitionJson))
                    // SHA-256 of the canonical JSON: an unchanged PUT keeps the version.
                    .col(text(WorkflowVersions::Digest))
                    .col(timestamp(WorkflowVersions::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(WorkflowVersions::WorkflowId)
                            .col(WorkflowVersions::Version),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Runs::Table)
                    .col(id(Runs::Id))
                    .col(id_ref(Runs::OrgId))
                    .col(id_ref(Runs::ProjectId))
                    .col(text(Runs::Workflow))
                    .col(id_ref(Runs::WorkflowId))
                    .col(integer(Runs::Version))
                    .col(text(Runs::Status))
                    .col(text(Runs::Environment))
                    .col(text(Runs::Suite))
                    .col(text(Runs::ParamsJson))
                    .col(text(Runs::InitialStateJson))
                    .col(text(Runs::CurrentStateJson))
                    .col(text(Runs::FinalStateJson))
                    .col(text(Runs::ShardsJson))
                    .col(text(Runs::CoverageJson))
                    .col(text(Runs::Reason))
                    .col(ColumnDef::new(Runs::IdempotencyKey).text().null())
                    .col(text(Runs::CreatedBy))
                    .col(timestamp(Runs::CreatedAt))
                    .col(timestamp(Runs::UpdatedAt))
                    .col(timestamp_null(Runs::StartedAt))
                    .col(timestamp_null(Runs::FinishedAt))
                    .col(timestamp_null(Runs::CancelRequestedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("runs_project_id")
                    .table(Runs::Table)
                    .col(Runs::ProjectId)
                    .col(Runs::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("runs_project_status_id")
                    .table(Runs::Table)
                    .col(Runs::ProjectId)
                    .col(Runs::Status)
                    .col(Runs::Id)
                    .to_owned(),
            )
            .await?;
        // NULL keys never collide, so runs without a key are unconstrained.
        manager
            .create_index(
                Index::create()
                    .name("runs_project_idempotency_key")
                    .table(Runs::Table)
                    .col(Runs::ProjectId)
                    .col(Runs::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Runs::Table.into_iden(),
            WorkflowVersions::Table.into_iden(),
            Workflows::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
