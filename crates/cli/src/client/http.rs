//! The HTTP API as the CLI calls it: base URL and token from flags or `SWITCHYARD_URL` /
//! `SWITCHYARD_TOKEN`; API errors shown as the server worded them.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use reqwest::Method;
use serde_json::Value;

/// Where the API is and who is calling.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Base URL of the gateway.
    #[arg(
        long,
        env = "SWITCHYARD_URL",
        default_value = "http://127.0.0.1:7080",
        global = true
    )]
    pub url: String,
    /// Bearer token (a service token, an access token, or the bootstrap token).
    #[arg(long, env = "SWITCHYARD_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

/// An API error: status and the `error` object of the body.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub details: Vec<String>,
}

pub struct Client {
    http: reqwest::Client,
    /// For event streams: no total timeout (a stream lasts as long as its run), but a read
    /// that stalls past a few keep-alive intervals fails.
    streaming: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A stalled event stream (the server sends a keep-alive every 15 s) fails after this.
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(60);

impl Client {
    pub fn new(connection: &Connection) -> anyhow::Result<Client> {
        let user_agent = concat!("switchyard-cli/", env!("CARGO_PKG_VERSION"));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent(user_agent)
            .build()
            .context("cannot build the HTTP client")?;
        let streaming = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(STREAM_READ_TIMEOUT)
            .user_agent(user_agent)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client {
            http,
            streaming,
            base: connection.url.trim_end_matches('/').to_owned(),
            token: connection.token.clone().filter(|t| !t.is_empty()),
        })
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.send(method, path, body, None).await
    }

    /// Sends a raw body with its content type (workflow definitions in YAML).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        json: Option<Value>,
        raw: Option<(String, &str)>,
    ) -> anyhow::Result<Value> {
        let token = self.token()?;
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(token);
        if let Some(body) = json {
            request = request.json(&body);
        }
        if let Some((body, content_type)) = raw {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status >= 400 {
            return Err(ApiError::from_body(status, &body).into());
        }
        Ok(body)
    }

    /// Opens an event stream (`text/event-stream`); refusals are [`ApiError`]s, as for calls.
    pub async fn stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let token = self.token()?;
        let url = format!("{}{path}", self.base);
        let response = self
            .streaming
            .get(&url)
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status().as_u16();
        if status >= 400 {
            let text = response.text().await.unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return Err(ApiError::from_body(status, &body).into());
        }
        Ok(response)
    }

    fn token(&self) -> anyhow::Result<&str> {
        match &self.token {
            Some(token) => Ok(token),
            None => bail!("no token: pass --token or set SWITCHYARD_TOKEN"),
        }
    }
}

impl ApiError {
    /// From an error answer's status and body (`{"error": {"code", "message", "details"}}`).
    pub fn from_body(status: u16, body: &Value) -> ApiError {
        let error = &body["error"];
        ApiError {
            status,
            code: error["code"].as_str().unwrap_or("error").to_owned(),
            message: error["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| body.to_string()),
            details: error["details"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .map(|v| {
                            format!(
                                "{}: {}",
                                v["field"].as_str().unwrap_or(""),
                                v["message"].as_str().unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}
