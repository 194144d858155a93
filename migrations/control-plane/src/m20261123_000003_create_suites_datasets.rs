//! Suites with their BDD features (features → scenarios → ordered steps), and datasets with
//! their versions and expectations.

use sea_orm_migration::prelude::*;

use switchyard_runtime::migrate::columns::{boolean, id, id_ref, integer, text, timestamp};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000003_create_suites_datasets"
    }
}

#[derive(DeriveIden)]
enum Suites {
    Table,
    Id,
    ProjectId,
    Name,
    RequireDatasetHealth,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Features {
    Table,
    Id,
    ProjectId,
    SuiteId,
    Path,
    Name,
    Description,
    TagsJson,
    BackgroundJson,
    Digest,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Scenarios {
    Table,
    Id,
    FeatureId,
    Position,
    Name,
    Rule,
    RuleBackgroundJson,
    TagsJson,
    Outline,
    ExamplesJson,
    Line,
}

#[derive(DeriveIden)]
enum ScenarioSteps {
    Table,
    ScenarioId,
    Position,
    Keyword,
    Text,
    DocString,
    TableJson,
    Line,
}

#[derive(DeriveIden)]
enum Datasets {
    Table,
    Id,
    ProjectId,
    Name,
    ExpectationsJson,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DatasetVersions {
    Table,
    Id,
    DatasetId,
    Version,
    Location,
    Format,
    CreatedAt,
}

async fn unique(
    manager: &SchemaManager<'_>,
    name: &str,
    table: impl IntoIden,
    columns: [DynIden; 2],
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table).unique();
    for column in columns {
        index.col(column);
    }
    manager.create_index(index.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Suites::Table)
                    .col(id(Suites::Id))
                    .col(id_ref(Suites::ProjectId))
                    .col(text(Suites::Name))
                    .col(boolean(Suites::RequireDatasetHealth))
                    .col(timestamp(Suites::CreatedAt))
                    .col(timestamp(Suites::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        unique(
            manager,
            "suites_project_name",
            Suites::Table,
            [Suites::ProjectId.into_iden(), Suites::Name.into_iden()],
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(Features::Table)
                    .col(id(Features::Id))
                    .col(id_ref(Features::ProjectId))
                    .col(id_ref(Features::SuiteId))
                    .col(text(Features::Path))
                    .col(text(Features::Name))
                    .col(text(Features::Description))
                    .col(text(Features::TagsJson))
                    .col(text(Features::BackgroundJson))
                    // SHA-256 of the file: re-ingesting an unchanged file changes nothing.
                    .col(text(Features::Digest))
                    .col(timestamp(Features::CreatedAt))
                    .col(timestamp(Features::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // One feature per path in a suite: re-ingesting a path updates it.
        unique(
            manager,
            "features_suite_path",
            Features::Table,
            [Features::SuiteId.into_iden(), Features::Path.into_iden()],
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(Scenarios::Table)
                    .col(id(Scenarios::Id))
                    .col(id_ref(Scenarios::FeatureId))
                    .col(integer(Scenarios::Position))
                    .col(text(Scenarios::Name))
                    .col(text(Scenarios::Rule))
                    .col(text(Scenarios::RuleBackgroundJson))
                    .col(text(Scenarios::TagsJson))
                    .col(boolean(Scenarios::Outline))
                    .col(text(Scenarios::ExamplesJson))
                    .col(integer(Scenarios::Line))
                    .to_owned(),
            )
            .await?;
        unique(
            manager,
            "scenarios_feature_position",
            Scenarios::Table,
            [
                Scenarios::FeatureId.into_iden(),
                Scenarios::Position.into_iden(),
            ],
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(ScenarioSteps::Table)
                    .col(id_ref(ScenarioSteps::ScenarioId))
                    .col(integer(ScenarioSteps::Position))
                    .col(text(ScenarioSteps::Keyword))
                    .col(text(ScenarioSteps::Text))
                    .col(ColumnDef::new(ScenarioSteps::DocString).text().null())
                    .col(text(ScenarioSteps::TableJson))
                    .col(integer(ScenarioSteps::Line))
                    .primary_key(
                        Index::create()
                            .col(ScenarioSteps::ScenarioId)
                            .col(ScenarioSteps::Position),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Datasets::Table)
                    .col(id(Datasets::Id))
                    .col(id_ref(Datasets::ProjectId))
                    .col(text(Datasets::Name))
                    .col(text(Datasets::ExpectationsJson))
                    .col(timestamp(Datasets::CreatedAt))
                    .col(timestamp(Datasets::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        unique(
            manager,
            "datasets_project_name",
            Datasets::Table,
            [Datasets::ProjectId.into_iden(), Datasets::Name.into_iden()],
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(DatasetVersions::Table)
                    .col(id(DatasetVersions::Id))
                    .col(id_ref(DatasetVersions::DatasetId))
                    .col(text(DatasetVersions::Version))
                    .col(text(DatasetVersions::Location))
                    .col(text(DatasetVersions::Format))
                    .col(timestamp(DatasetVersions::CreatedAt))
                    .to_owned(),
            )
            .await?;
        unique(
            manager,
            "dataset_versions_dataset_version",
            DatasetVersions::Table,
            [
                DatasetVersions::DatasetId.into_iden(),
                DatasetVersions::Version.into_iden(),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DatasetVersions::Table.into_iden(),
            Datasets::Table.into_iden(),
            ScenarioSteps::Table.into_iden(),
            Scenarios::Table.into_iden(),
            Features::Table.into_iden(),
            Suites::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
