//! The HTTP server on hyper: accept with a connection limit, HTTP/1.1 keep-alive with header and
//! body timeouts, routing, and graceful shutdown (stop accepting, let open requests finish).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;

use crate::http::{correlation_id, json, Body, CORRELATION_HEADER};
use crate::state::State;

/// hyper's own bound on headers per request.
const HYPER_HEADERS_MAX: usize = 100;

/// Serves until `shutdown` turns true, then waits (up to the grace period) for open requests.
pub async fn serve(listener: TcpListener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let server = &state.config.server;
    let connections = Arc::new(Semaphore::new(server.connections_max));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    // Request heads are bounded in count and bytes: a header flood gets 431 and costs at most
    // `header_bytes_max` of buffer per connection. Half-closes are allowed: a caller that shuts
    // its side after its request still gets the answer, and hyper does not try a read (a
    // syscall and a new 8 KiB buffer) during every request to notice a hang-up early.
    http.timer(TokioTimer::new())
        .keep_alive(true)
        .half_close(true)
        .header_read_timeout(Duration::from_millis(server.header_read_timeout_ms))
        .max_buf_size(server.header_bytes_max);
    if server.headers_max != HYPER_HEADERS_MAX {
        // hyper keeps its default of 100 on the stack; any other bound costs a heap
        // allocation per request.
        http.max_headers(server.headers_max);
    }
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving");
    }
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(state, peer, request).await) }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    state.draining();
    let grace = Duration::from_millis(server.shutdown_grace_ms);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("shutdown grace period over; closing open connections"),
    }
}

/// The Prometheus text of every series and gauge.
async fn metrics(state: &State) -> Response<Body> {
    let text = crate::metrics::render(&state.metrics, &state.gauges().await);
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

/// `server.metrics_listen`: `GET /metrics` alone on a listener of its own (an admin network),
/// so the callback and REST listener need not expose it. Ends when `shutdown` turns true.
pub async fn serve_metrics(
    listener: TcpListener,
    state: std::sync::Weak<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5));
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let state = state.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let state = state.upgrade();
            async move {
                let response = match (state, request.method(), request.uri().path()) {
                    (Some(state), &Method::GET, "/metrics") => metrics(&state).await,
                    (None, _, _) => json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &serde_json::json!({"status": "stopping"}),
                    ),
                    _ => json(
                        StatusCode::NOT_FOUND,
                        &serde_json::json!({"status": 404, "message": "only GET /metrics here"}),
                    ),
                };
                Ok::<_, Infallible>(response)
            }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

/// One request: correlation id in and out, then routing. Every log line written while the
/// request is handled carries its correlation id (the span's field).
async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Response<Body> {
    let correlation = correlation_id(&request);
    if rest::owns(request.uri().path()) {
        // The REST module records it (audit log) as the answer will carry it.
        request
            .headers_mut()
            .insert(CORRELATION_HEADER, correlation.clone());
    }
    let span = tracing::info_span!(
        "request",
        correlation_id = %correlation.to_str().unwrap_or_default()
    );
    let mut response = route(&state, peer, request).instrument(span).await;
    response
        .headers_mut()
        .insert(CORRELATION_HEADER, correlation);
    response
}

async fn route(state: &Arc<State>, peer: SocketAddr, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path();
    match (request.method(), path) {
        (&Method::GET, "/health") => health(state).await,
        (&Method::GET, "/metrics") if state.config.server.metrics_listen.is_none() => {
            metrics(state).await
        }
        (&Method::GET, "/ready") => {
            if state.is_ready() {
                json(StatusCode::OK, &serde_json::json!({"status": "ready"}))
            } else {
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"status": "draining"}),
                )
            }
        }
        (_, p) if p.starts_with(crate::provider::CALLBACK_PREFIX) => {
            crate::provider::handle(state, peer, request).await
        }
        (m, p) if rest::console::owns(p) && state.api.is_some() => {
            rest::console::serve(m, p).map(Full::new)
        }
        (_, p) if rest::owns(p) => match &state.api {
            Some(api) => {
                let trusted = &state.config.server.trusted_proxies;
                let ip = crate::registry::caller_ip(peer.ip(), request.headers(), trusted);
                api.serve(request, ip).await.map(Full::new)
            }
            None => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"success": false, "status": 404, "code": "NOT_FOUND", "message": "the REST module is not enabled (rest.enabled)"}),
            ),
        },
        (_, "/health" | "/ready") => method_not_allowed(),
        (_, "/metrics") if state.config.server.metrics_listen.is_none() => method_not_allowed(),
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"success": false, "status": 404, "message": "no such route", "code": "NOT_FOUND"}),
        ),
    }
}

async fn health(state: &State) -> Response<Body> {
    let database_up = state.database_up().await;
    let status = if database_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        &serde_json::json!({
            "status": if database_up { "ok" } else { "degraded" },
            "database": if database_up { "up" } else { "down" },
            "version": env!("CARGO_PKG_VERSION"),
        }),
    )
}

fn method_not_allowed() -> Response<Body> {
    json(
        StatusCode::METHOD_NOT_ALLOWED,
        &serde_json::json!({"success": false, "status": 405, "message": "method not allowed", "code": "METHOD_NOT_ALLOWED"}),
    )
}
