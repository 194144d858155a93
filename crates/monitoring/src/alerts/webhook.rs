//! Webhook delivery: claims due notifications (once across replicas: the claim runs under the
//! job lock and pushes the rows' `next_attempt_at` past the claim period), POSTs each payload
//! and records the outcome — delivered on a 2xx, otherwise retried with exponential backoff
//! until `alerts.webhook_max_attempts`, then given up.
//!
//! Every delivery re-checks the URL against the policy, and host names resolve through
//! [`CheckedResolver`], which refuses a name with any address the policy forbids — a name
//! that pointed somewhere public when the rule was saved may point at `169.254.169.254` now
//! (DNS rebinding). Redirects are not followed and proxies are not used: either would connect
//! somewhere the checks never saw.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sea_orm::DatabaseConnection;
use switchyard_runtime::shutdown::Shutdown;

use super::config::AlertsConfig;
use crate::domain::alert::backoff;
use crate::domain::url_policy::UrlPolicy;
use crate::error::Result;
use crate::store::alert_entity::alert_notification;
use crate::store::alerts::notifications::{self, Outcome};

pub const JOB: &str = "monitoring.alerts.deliver";
/// Notifications claimed per round.
const BATCH: u64 = 32;

/// Resolves host names and refuses any whose answers the policy forbids.
struct CheckedResolver(UrlPolicy);

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            policy.check_resolved(&ips)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client webhooks are sent with.
pub fn client(config: &AlertsConfig) -> std::result::Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(config.webhook_timeout)
        .connect_timeout(config.webhook_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(CheckedResolver(config.webhook_urls)))
        .user_agent(concat!("switchyard-monitoring/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends one notification and says what came of it (`attempt`: this attempt's number).
async fn attempt(
    client: &reqwest::Client,
    config: &AlertsConfig,
    row: &alert_notification::Model,
    attempt: u32,
) -> Outcome {
    if let Err(rejection) = config.webhook_urls.check_url(&row.url) {
        return Outcome::GiveUp(format!("webhook URL no longer allowed: {rejection}"));
    }
    let sent = client
        .post(&row.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("x-switchyard-event", row.event.as_str())
        .header("x-switchyard-alert-id", row.alert_id.as_str())
        // The same for every attempt of this notification, so receivers can drop repeats.
        .header("x-switchyard-delivery", row.id.to_string())
        .body(row.payload.clone())
        .send()
        .await;
    let error = match sent {
        Ok(response) if response.status().is_success() => return Outcome::Delivered,
        Ok(response) => format!("receiver answered HTTP {}", response.status().as_u16()),
        // Without the URL: webhook URLs often carry a secret in their path.
        Err(error) => root_cause(&error.without_url()),
    };
    if attempt >= config.webhook_max_attempts {
        return Outcome::GiveUp(error);
    }
    let wait = backoff(
        attempt,
        config.webhook_initial_backoff,
        config.webhook_max_backoff,
    );
    Outcome::Retry(
        Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default(),
        error,
    )
}

fn root_cause(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// One delivery round: claims due notifications and sends them concurrently. `None` when
/// another replica holds the job; otherwise how many were attempted.
pub async fn deliver_due(
    db: &DatabaseConnection,
    client: &reqwest::Client,
    config: &AlertsConfig,
) -> Result<Option<usize>> {
    let now = Utc::now();
    // Long enough for the attempt to finish and be recorded before anyone may claim again.
    let claim = config.webhook_timeout * 2 + Duration::from_secs(5);
    let claim_until = now + chrono::Duration::from_std(claim).unwrap_or_default();
    if !notifications::any_due(db, now).await? {
        return Ok(Some(0));
    }
    let txn = switchyard_runtime::db::write_txn(db).await?;
    if !switchyard_runtime::db::try_job_lock(&txn, JOB).await? {
        txn.rollback().await?;
        return Ok(None);
    }
    let due = notifications::claim_due(&txn, now, claim_until, BATCH).await?;
    txn.commit().await?;
    let mut sending = tokio::task::JoinSet::new();
    for row in due.iter().cloned() {
        let (client, config, db) = (client.clone(), config.clone(), db.clone());
        sending.spawn(async move {
            let number = u32::try_from(row.attempts).unwrap_or(0).saturating_add(1);
            let outcome = attempt(&client, &config, &row, number).await;
            match &outcome {
                Outcome::Delivered => {
                    tracing::info!(notification = row.id, alert_id = %row.alert_id, event = %row.event, attempt = number, "webhook delivered")
                }
                Outcome::Retry(at, error) => {
                    tracing::warn!(notification = row.id, alert_id = %row.alert_id, attempt = number, %error, retry_at = %at.to_rfc3339(), "webhook delivery failed; will retry")
                }
                Outcome::GiveUp(error) => {
                    tracing::warn!(notification = row.id, alert_id = %row.alert_id, attempt = number, %error, "webhook delivery given up")
                }
            }
            let attempts = i32::try_from(number).unwrap_or(i32::MAX);
            notifications::record(&db, row.id, attempts, &outcome, Utc::now()).await
        });
    }
    while let Some(done) = sending.join_next().await {
        match done {
            Ok(Ok(())) => {}
            // The claim expires and the row comes due again: at least once, never lost.
            Ok(Err(error)) => tracing::warn!(%error, "webhook outcome not recorded"),
            Err(error) => tracing::warn!(%error, "webhook delivery task failed"),
        }
    }
    Ok(Some(due.len()))
}

/// Runs [`deliver_due`] every `alerts.delivery_interval` (at once again after a full batch)
/// until shutdown.
pub async fn run_periodically(db: DatabaseConnection, config: AlertsConfig, shutdown: Shutdown) {
    let client = match client(&config) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "webhook client could not be built; alerts are not delivered");
            return;
        }
    };
    let mut full = false;
    loop {
        if !full {
            tokio::select! {
                _ = tokio::time::sleep(config.delivery_interval) => {}
                _ = shutdown.cancelled() => return,
            }
        }
        full = match deliver_due(&db, &client, &config).await {
            Ok(Some(n)) => n as u64 == BATCH,
            Ok(None) => false,
            Err(error) => {
                tracing::warn!(%error, "webhook delivery round failed; retrying next interval");
                false
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[tokio::test]
    async fn webhook_resolver_refuses_names_that_resolve_to_forbidden_addresses() {
        let strict = CheckedResolver(UrlPolicy::default());
        let name = Name::from_str("localhost").expect("a name");
        let refused = strict.resolve(name).await;
        assert!(refused.is_err(), "localhost resolves to loopback");
        let loopback = CheckedResolver(UrlPolicy {
            allow_loopback: true,
            ..UrlPolicy::default()
        });
        let name = Name::from_str("localhost").expect("a name");
        let addrs: Vec<SocketAddr> = loopback.resolve(name).await.expect("allowed").collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }

    #[tokio::test]
    async fn webhook_attempts_give_up_on_urls_the_policy_now_refuses() {
        let config = AlertsConfig::default();
        let client = client(&config).expect("client");
        let row = alert_notification::Model {
            id: 1,
            alert_id: "a".into(),
            url: "http://169.254.169.254/latest".into(),
            event: "firing".into(),
            payload: "{}".into(),
            attempts: 0,
            next_attempt_at: Utc::now(),
            delivered_at: None,
            failed_at: None,
            last_error: String::new(),
            created_at: Utc::now(),
        };
        match attempt(&client, &config, &row, 1).await {
            Outcome::GiveUp(error) => assert!(error.contains("metadata"), "{error}"),
            other => panic!("expected to give up, got {other:?}"),
        }
        // A refused connection is retried later, and given up after the last attempt.
        let closed = alert_notification::Model {
            url: "http://10.255.255.1:9/".into(),
            ..row
        };
        let quick = AlertsConfig {
            webhook_timeout: Duration::from_millis(200),
            webhook_max_attempts: 2,
            ..AlertsConfig::default()
        };
        let client = super::client(&quick).expect("client");
        assert!(matches!(
            attempt(&client, &quick, &closed, 1).await,
            Outcome::Retry(..)
        ));
        assert!(matches!(
            attempt(&client, &quick, &closed, 2).await,
            Outcome::GiveUp(_)
        ));
    }
}
