//! The simulated provider's HTTP side: callbacks in the provider's dialect, each attempt
//! signed afresh (or deliberately broken: bad signature, stale timestamp, malformed body), a
//! per-attempt client timeout, and the dialect's reading of what came back. A [`Trip`] keeps
//! the bytes of one attempt both ways, for the certification kit's report.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dialects::wire::SIGNATURE_HEADER;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

use crate::dialect::{Encoded, Kind, Provider};

pub use crate::dialect::{Attempt, Send};

#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    /// One gateway, or several on one database: then each attempt goes to the next in turn,
    /// so one player's bet, win and retries land on different gateways.
    bases: Arc<[String]>,
    next: Arc<AtomicUsize>,
    provider: Provider,
    /// Where the provider's calls go below each base (`/api/provider-callback/{code}` unless
    /// the target URL names a path of its own).
    prefix: String,
}

/// One attempt as it went: what was sent and what came back.
#[derive(Debug, Clone)]
pub struct Trip {
    /// The path and query sent to.
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub sent: Vec<u8>,
    /// The HTTP status and body, or why none came.
    pub answer: Result<(u16, Bytes), String>,
    pub elapsed: Duration,
    /// The dialect's reading of the answer.
    pub attempt: Attempt,
}

impl Client {
    pub fn new(addr: SocketAddr, provider: Provider) -> Client {
        Client::spread(&[addr], provider)
    }

    /// Attempts spread over `addrs` in turn (at least one).
    pub fn spread(addrs: &[SocketAddr], provider: Provider) -> Client {
        assert!(!addrs.is_empty(), "at least one gateway");
        let prefix = format!("/api/provider-callback/{}", provider.code);
        Client {
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
            bases: addrs.iter().map(|a| format!("http://{a}")).collect(),
            next: Arc::new(AtomicUsize::new(0)),
            provider,
            prefix,
        }
    }

    /// A client of any wallet at `url` (`http://host:port`, or `http://host:port/path` when its
    /// callbacks for this provider live under `/path` rather than the gateway's
    /// `/api/provider-callback/{code}`).
    pub fn to_url(url: &str, provider: Provider) -> Result<Client, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!(
                "{url}: only http:// targets (put a TLS-terminating proxy before an https wallet)"
            )
        })?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let path = path.trim_end_matches('/');
        let prefix = if path.is_empty() {
            format!("/api/provider-callback/{}", provider.code)
        } else {
            format!("/{path}")
        };
        Ok(Client {
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
            bases: Arc::from([format!("http://{authority}")]),
            next: Arc::new(AtomicUsize::new(0)),
            provider,
            prefix,
        })
    }

    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// One attempt at `encoded`, signed afresh (or broken as `send` says); `timeout` is the
    /// client's patience.
    pub async fn attempt(&self, encoded: &Encoded, send: Send, timeout: Duration) -> Attempt {
        self.trip(encoded, send, timeout).await.attempt
    }

    /// [`Client::attempt`], keeping the bytes sent and received.
    pub async fn trip(&self, encoded: &Encoded, send: Send, timeout: Duration) -> Trip {
        let signed = self.provider.sign(encoded, send);
        let path = format!("{}/{}", self.prefix, signed.path_and_query);
        let content_type = if self.provider.kind == Kind::Pragmatic {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        };
        let started = Instant::now();
        let answer = self
            .exchange(
                &path,
                content_type,
                &signed.headers,
                signed.body.clone(),
                timeout,
            )
            .await;
        let attempt = match &answer {
            Ok((status, body)) => self.provider.classify(*status, body),
            Err(why) => Attempt::Unknown(why.clone()),
        };
        Trip {
            path,
            headers: signed.headers,
            sent: signed.body,
            answer,
            elapsed: started.elapsed(),
            attempt,
        }
    }

    /// A raw native POST (used by replay, which may carry recorded headers).
    pub async fn post(
        &self,
        path: &str,
        signature: Option<String>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Attempt {
        let headers: Vec<(&str, String)> = signature
            .map(|s| (SIGNATURE_HEADER, s))
            .into_iter()
            .collect();
        match self
            .exchange(path, "application/json", &headers, body, timeout)
            .await
        {
            Ok((status, body)) => self.provider.classify(status, &body),
            Err(why) => Attempt::Unknown(why),
        }
    }

    async fn exchange(
        &self,
        path: &str,
        content_type: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), String> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.bases.len();
        let mut request = http::Request::post(format!("{}{path}", self.bases[turn]))
            .header(http::header::CONTENT_TYPE, content_type);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| "request build".to_string())?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err("client timeout".into()),
            Ok(result) => result,
        }
    }
}
