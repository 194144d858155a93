//! Organizations, projects, environments, users and service tokens.

use sea_orm_migration::prelude::*;

use switchyard_runtime::migrate::columns::{id, id_ref, text, timestamp, timestamp_null};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000001_create_tenancy_identity"
    }
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    OrgId,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Environments {
    Table,
    Id,
    ProjectId,
    Name,
    VariablesJson,
    DatasetVersionId,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    OrgId,
    Username,
    PasswordHash,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ServiceTokens {
    Table,
    Id,
    Name,
    OrgId,
    ProjectId,
    Scopes,
    TokenHash,
    CreatedBy,
    ExpiresAt,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Organizations::Table)
                    .col(id(Organizations::Id))
                    .col(text(Organizations::Name).unique_key())
                    .col(timestamp(Organizations::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Projects::Table)
                    .col(id(Projects::Id))
                    .col(id_ref(Projects::OrgId))
                    .col(text(Projects::Name))
                    .col(timestamp(Projects::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("projects_org_name")
                    .table(Projects::Table)
                    .col(Projects::OrgId)
                    .col(Projects::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Environments::Table)
                    .col(id(Environments::Id))
                    .col(id_ref(Environments::ProjectId))
                    .col(text(Environments::Name))
                    .col(text(Environments::VariablesJson))
                    .col(text(Environments::DatasetVersionId))
                    .col(timestamp(Environments::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("environments_project_name")
                    .table(Environments::Table)
                    .col(Environments::ProjectId)
                    .col(Environments::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(id(Users::Id))
                    .col(id_ref(Users::OrgId))
                    // Login takes only a username, so usernames are unique platform-wide.
                    .col(text(Users::Username).unique_key())
                    .col(text(Users::PasswordHash))
                    .col(text(Users::Role))
                    .col(timestamp(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ServiceTokens::Table)
                    .col(id(ServiceTokens::Id))
                    .col(text(ServiceTokens::Name))
                    .col(text(ServiceTokens::OrgId))
                    .col(text(ServiceTokens::ProjectId))
                    .col(text(ServiceTokens::Scopes))
                    // SHA-256 of the whole token, hex; the token itself is never stored.
                    .col(text(ServiceTokens::TokenHash).unique_key())
                    .col(text(ServiceTokens::CreatedBy))
                    .col(timestamp_null(ServiceTokens::ExpiresAt))
                    .col(timestamp(ServiceTokens::CreatedAt))
                    .col(timestamp_null(ServiceTokens::LastUsedAt))
                    .col(timestamp_null(ServiceTokens::RevokedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("service_tokens_org")
                    .table(ServiceTokens::Table)
                    .col(ServiceTokens::OrgId)
                    .col(ServiceTokens::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ServiceTokens::Table.into_iden(),
            Users::Table.into_iden(),
            Environments::Table.into_iden(),
            Projects::Table.into_iden(),
            Organizations::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
