//! The whole platform behind the HTTP gateway, and a small client that speaks to it the way a
//! CI script would (status, JSON body, headers).

use std::time::Duration;

use serde_json::Value;
use switchyard_gateway::{Gateway, GatewayConfig};
use switchyard_runtime::shutdown::Shutdown;

use crate::cluster::{Cluster, redis};
use crate::database::TestDatabase;

pub struct Api {
    pub cluster: Cluster,
    pub gateway: Gateway,
    /// Its HTTP client (`api.get(..)`, `api.base` and the rest reach it through `Deref`).
    pub http: Http,
}

impl std::ops::Deref for Api {
    type Target = Http;

    fn deref(&self) -> &Http {
        &self.http
    }
}

/// A client for any gateway at `base` (an in-process one, or `switchyard dev`'s).
pub struct Http {
    pub base: String,
    client: reqwest::Client,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// The `error.code` of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn spawn_api(db: &TestDatabase) -> Api {
    spawn_api_with(db, |_| {}).await
}

/// With a hook to adjust the gateway's config (rate limits, body limits).
pub async fn spawn_api_with(db: &TestDatabase, adjust: impl FnOnce(&mut GatewayConfig)) -> Api {
    spawn_api_tuned(db, adjust, |_| {}).await
}

/// With hooks for the gateway's and the scheduler's configs.
pub async fn spawn_api_tuned(
    db: &TestDatabase,
    adjust: impl FnOnce(&mut GatewayConfig),
    adjust_scheduler: impl FnOnce(&mut switchyard_scheduler::SchedulerConfig),
) -> Api {
    spawn_api_full(db, adjust, adjust_scheduler, |_| {}).await
}

/// With hooks for the gateway's, the scheduler's and monitoring's configs.
pub async fn spawn_api_full(
    db: &TestDatabase,
    adjust: impl FnOnce(&mut GatewayConfig),
    adjust_scheduler: impl FnOnce(&mut switchyard_scheduler::SchedulerConfig),
    adjust_monitoring: impl FnOnce(&mut switchyard_monitoring::MonitoringConfig),
) -> Api {
    // Boxed: the cluster's start-up state would otherwise sit inline in every caller's future.
    let cluster = Box::pin(crate::cluster::spawn_cluster_tuned(
        db,
        adjust_scheduler,
        adjust_monitoring,
    ))
    .await;
    let mut config = GatewayConfig::default();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.http.shutdown_grace = Duration::from_secs(5);
    config.redis = redis(db);
    config.upstream.control_plane = format!("http://{}", cluster.control_plane.grpc_addr);
    config.upstream.scheduler = format!("http://{}", cluster.scheduler.grpc_addr);
    config.upstream.monitoring = format!("http://{}", cluster.monitoring.grpc_addr);
    config.upstream.audit = format!("http://{}", cluster.audit.grpc_addr);
    adjust(&mut config);
    let gateway = switchyard_gateway::start(config, Shutdown::new())
        .await
        .unwrap();
    let http = Http::new(format!("http://{}", gateway.addr));
    Api {
        cluster,
        gateway,
        http,
    }
}

impl Api {
    pub async fn stop(self) {
        // Boxed: the drains' state would otherwise sit inline in every caller's future.
        Box::pin(self.gateway.stop()).await.unwrap();
        Box::pin(self.cluster.stop()).await;
    }
}

impl Http {
    pub fn new(base: String) -> Http {
        Http {
            base,
            client: reqwest::Client::new(),
        }
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut builder = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            builder = builder.bearer_auth(token);
        }
        builder
    }

    pub async fn send(&self, builder: reqwest::RequestBuilder) -> Reply {
        let response = builder.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(self.request(reqwest::Method::GET, path, token))
            .await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(self.request(reqwest::Method::POST, path, token).json(&body))
            .await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(self.request(reqwest::Method::PUT, path, token).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(self.request(reqwest::Method::DELETE, path, token))
            .await
    }
}
