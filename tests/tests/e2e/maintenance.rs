//! The control plane's periodic maintenance against a real database: expired service tokens
//! are deactivated (and audited), valid and expiry-less ones are left alone, an empty database
//! is fine, and a round that finds another replica holding the job skips.

use std::time::Duration;

use chrono::Utc;
use sea_orm::EntityTrait;
use switchyard_control_plane::config::DatasetsConfig;
use switchyard_control_plane::data_source::DataSources;
use switchyard_control_plane::domain::access_token::Signer;
use switchyard_control_plane::maintenance::deactivate_expired_tokens;
use switchyard_control_plane::run_changes::RunChanges;
use switchyard_control_plane::state::State;
use switchyard_control_plane::store::entity::service_token;
use switchyard_control_plane::store::identity::{NewToken, create_token};
use switchyard_control_plane_migration::Migrator;
use switchyard_runtime::cache::Cache;
use switchyard_runtime::shutdown::Shutdown;
use switchyard_test_support::TestDatabase;

#[tokio::test]
async fn expired_tokens_are_deactivated_once_and_others_left_alone() {
    let db = TestDatabase::postgres().await;
    let config = db.config("control-plane");
    let conn = switchyard_runtime::db::connect(&config).await.unwrap();
    switchyard_runtime::migrate::run::<Migrator>(&conn, &config)
        .await
        .unwrap();
    let state = State {
        db: conn.clone(),
        cache: Cache::memory(),
        signer: Signer::new(&[7u8; 32], Duration::from_secs(900)),
        bootstrap_token: None,
        auth_cache_ttl: Duration::from_secs(5),
        data: DataSources::new(DatasetsConfig::default()),
        run_changes: RunChanges::new(),
        shutdown: Shutdown::new(),
    };
    assert_eq!(deactivate_expired_tokens(&state).await.unwrap(), Some(0));
    let scopes = vec!["runs:read".to_owned()];
    let token = |name: &'static str, expires_at| NewToken {
        name,
        org_id: "00000000-0000-7000-8000-000000000001",
        project_id: "",
        scopes: &scopes,
        token_hash: format!("hash-{name}"),
        created_by: "test",
        expires_at,
    };
    let expired = create_token(
        &conn,
        token("old", Some(Utc::now() - chrono::Duration::hours(1))),
    )
    .await
    .unwrap();
    let valid = create_token(
        &conn,
        token("valid", Some(Utc::now() + chrono::Duration::hours(1))),
    )
    .await
    .unwrap();
    let forever = create_token(&conn, token("forever", None)).await.unwrap();

    let holder = sea_orm::TransactionTrait::begin(&conn).await.unwrap();
    switchyard_runtime::db::hold_job_lock(&holder, "control-plane.token-expiry")
        .await
        .unwrap();
    assert_eq!(deactivate_expired_tokens(&state).await.unwrap(), None);
    holder.commit().await.unwrap();

    assert_eq!(deactivate_expired_tokens(&state).await.unwrap(), Some(1));
    assert_eq!(
        deactivate_expired_tokens(&state).await.unwrap(),
        Some(0),
        "once"
    );
    let revoked = |id: String| {
        let conn = conn.clone();
        async move {
            service_token::Entity::find_by_id(id)
                .one(&conn)
                .await
                .unwrap()
                .unwrap()
                .revoked_at
                .is_some()
        }
    };
    assert!(revoked(expired.id).await);
    assert!(!revoked(valid.id).await);
    assert!(!revoked(forever.id).await);
}
