//! sea-orm entities of the alerting tables (see `m20261129_000001_alerts` for indexes and why).
//! `alert_rule` is spelled out rather than made with `entity!`: its threshold is a float, and
//! that macro derives `Eq`.

use switchyard_runtime::entity;

pub mod alert_rule {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "alert_rules")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub org_id: String,
        pub project_id: String,
        pub name: String,
        pub kind: String,
        pub threshold: f64,
        pub window_ms: i64,
        /// JSON array of URL strings.
        pub webhooks: String,
        pub enabled: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

entity!(alert, "alerts", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub rule_id: String,
    pub org_id: String,
    pub project_id: String,
    pub kind: String,
    pub state: String,
    pub dedupe_key: String,
    pub message: String,
    pub fired_at: DateTimeUtc,
    pub acknowledged_at: Option<DateTimeUtc>,
    pub acknowledged_by: String,
    pub resolved_at: Option<DateTimeUtc>,
    pub resolved_by: String,
});

entity!(alert_notification, "alert_notifications", {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub alert_id: String,
    pub url: String,
    pub event: String,
    pub payload: String,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    pub delivered_at: Option<DateTimeUtc>,
    pub failed_at: Option<DateTimeUtc>,
    pub last_error: String,
    pub created_at: DateTimeUtc,
});
