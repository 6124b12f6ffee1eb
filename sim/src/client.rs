//! The simulated provider's HTTP side: signed native callbacks (each attempt signed afresh),
//! deliberately broken variants (bad signature, stale timestamp, malformed body), a
//! per-attempt client timeout, and the classification of what came back.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gateway::provider::wire::{sign_native, Response, SIGNATURE_HEADER};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

/// What one attempt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// HTTP 200 with a business status: final.
    Final(Response),
    /// A refusal that is final too (400, 401, 404, 413).
    Refused(u16, String),
    /// No answer, a timeout, or a retryable answer (5xx / TEMPORARY_ERROR): outcome unknown.
    Unknown(String),
}

/// How an attempt is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Send {
    Signed,
    WrongSecret,
    Stale,
    Malformed,
}

#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    base: String,
    provider: String,
    secret: Vec<u8>,
}

impl Client {
    pub fn new(addr: SocketAddr, provider: &str, secret: &str) -> Client {
        Client {
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
            provider: provider.to_string(),
            secret: secret.as_bytes().to_vec(),
        }
    }

    /// One attempt at `action` with `body`; `timeout` is the client's patience.
    pub async fn attempt(
        &self,
        action: &str,
        body: &[u8],
        send: Send,
        timeout: Duration,
    ) -> Attempt {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let (signature, body) = match send {
            Send::Signed => (sign_native(&self.secret, now, body), body.to_vec()),
            Send::WrongSecret => (sign_native(b"not-the-secret", now, body), body.to_vec()),
            Send::Stale => (sign_native(&self.secret, now - 3_600, body), body.to_vec()),
            Send::Malformed => {
                let broken = body[..body.len() / 2].to_vec();
                (sign_native(&self.secret, now, &broken), broken)
            }
        };
        self.post(
            &format!("/api/provider-callback/{}/{action}", self.provider),
            Some(signature),
            body,
            timeout,
        )
        .await
    }

    /// A raw POST (used by replay, which may carry recorded headers).
    pub async fn post(
        &self,
        path: &str,
        signature: Option<String>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Attempt {
        let mut request = http::Request::post(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        let Ok(request) = request.body(Full::new(Bytes::from(body))) else {
            return Attempt::Unknown("request build".into());
        };
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
            Err(_) => Attempt::Unknown("client timeout".into()),
            Ok(Err(e)) => Attempt::Unknown(e),
            Ok(Ok((status, body))) => classify(status, &body),
        }
    }
}

fn classify(status: u16, body: &[u8]) -> Attempt {
    let parsed: Option<Response> = serde_json::from_slice(body).ok();
    match (status, parsed) {
        (200, Some(r)) => Attempt::Final(r),
        (s, _) if s >= 500 => Attempt::Unknown(format!("HTTP {s}")),
        (s, Some(r)) => Attempt::Refused(s, r.status),
        (s, None) => Attempt::Refused(s, String::from_utf8_lossy(body).into_owned()),
    }
}
