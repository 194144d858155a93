//! The HTTP API as the CLI calls it: base URL and token from flags or `SWITCHYARD_URL` /
//! `SWITCHYARD_TOKEN`; API errors shown as the server worded them.

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
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(connection: &Connection) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .user_agent(concat!("switchyard-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client {
            http,
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
        let Some(token) = &self.token else {
            bail!("no token: pass --token or set SWITCHYARD_TOKEN");
        };
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
            let error = &body["error"];
            return Err(ApiError {
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
            .into());
        }
        Ok(body)
    }
}
