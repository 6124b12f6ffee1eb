//! Callbacks as received, kept for the back office's trace and replay. The pipeline hands a
//! [`Record`] to a bounded queue after it has answered; one writer task copies what queued up
//! into `callback_requests` (`COPY ... BINARY`, one statement per batch) on its own connection.
//! Nothing here is on the commit path: a full queue drops the record, a failed copy drops its
//! batch (both counted in `wallet_trace_dropped_total`) and the writer reconnects; its commits
//! are asynchronous (no fsync of their own). A lost row costs a diagnosis, never money: the
//! ledger stays the record of what happened.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderMap;
use settlement::batch::Settled;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::config;

/// Where a callback came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The provider, over the wire.
    Provider,
    /// Sent again from the back office (see `provider::replay`).
    Replay,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Provider => "provider",
            Origin::Replay => "replay",
        }
    }
}

/// Where a callback's answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Settled by a lane's batch now (a first application, or a retry the database answered
    /// from the ledger).
    Batch(Settled),
    /// The dedup index's remembered answer.
    Index,
    /// The outcome of a concurrent twin that was being settled.
    Twin,
    /// Refused before settling (retryable: overloaded, deadline, twin in flight).
    Refused,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Batch(_) => "batch",
            Via::Index => "dedup_index",
            Via::Twin => "twin",
            Via::Refused => "refused",
        }
    }

    fn settled(self) -> Option<Settled> {
        match self {
            Via::Batch(settled) => Some(settled),
            _ => None,
        }
    }
}

/// One callback that named transaction ids, as received and as answered.
#[derive(Debug)]
pub struct Record {
    pub provider_id: i32,
    /// Every transaction id the request named (one row each).
    pub tx_ids: Vec<String>,
    pub received_at: SystemTime,
    pub origin: Origin,
    pub peer: SocketAddr,
    pub caller_ip: IpAddr,
    pub method: String,
    /// Path and query, with any credential the dialect carries in it redacted.
    pub target: String,
    /// "name: value" lines (see [`header_lines`]).
    pub headers: String,
    pub body: Bytes,
    /// How the credentials were checked (the dialect's scheme).
    pub signature: &'static str,
    pub status: u16,
    pub answer: Bytes,
    pub outcome: &'static str,
    pub via: Via,
    pub duplicate: bool,
    pub read: Duration,
    pub verify: Duration,
    pub total: Duration,
}

/// Headers never stored: credentials no dialect signs with.
const REDACTED_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// The request's headers as "name: value" lines, in arrival order, credentials redacted;
/// values that are not text are kept lossily (they carry no signature of ours).
pub fn header_lines(headers: &HeaderMap) -> String {
    let mut lines = String::with_capacity(headers.len() * 32);
    for (name, value) in headers {
        lines.push_str(name.as_str());
        lines.push_str(": ");
        if REDACTED_HEADERS.contains(&name.as_str()) {
            lines.push_str("[redacted]");
        } else {
            lines.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
        lines.push('\n');
    }
    lines
}

/// Parses [`header_lines`] back (for a replay); lines that are not a header are skipped.
pub fn parse_header_lines(lines: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in lines.lines() {
        let Some((name, value)) = line.split_once(": ") else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

enum Message {
    Record(Box<Record>),
    /// Answered once everything queued before it was written (or dropped).
    Flush(oneshot::Sender<()>),
}

/// The pipeline's handle on the writer; `Tracer::off()` keeps nothing.
#[derive(Debug, Clone)]
pub struct Tracer {
    queue: Option<mpsc::Sender<Message>>,
}

impl Tracer {
    pub fn off() -> Tracer {
        Tracer { queue: None }
    }

    /// Starts the writer (it connects on its first batch).
    pub fn start(pg: tokio_postgres::Config, options: &config::Trace) -> Tracer {
        if !options.enabled {
            return Tracer::off();
        }
        let (queue, rx) = mpsc::channel(options.queue_len_max);
        let writer = Writer {
            pg,
            client: None,
            batch_len_max: options.batch_len_max,
        };
        tokio::spawn(writer.run(rx));
        Tracer { queue: Some(queue) }
    }

    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues a record; drops it (counted) when the queue is full.
    pub fn keep(&self, record: Record) {
        let Some(queue) = &self.queue else { return };
        if queue.try_send(Message::Record(Box::new(record))).is_err() {
            metrics::counter!("wallet_trace_dropped_total", "reason" => "queue_full").increment(1);
        }
    }

    /// Waits until every record queued so far is written (or dropped).
    pub async fn flush(&self) {
        let Some(queue) = &self.queue else { return };
        let (done, wait) = oneshot::channel();
        if queue.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

struct Writer {
    pg: tokio_postgres::Config,
    client: Option<tokio_postgres::Client>,
    batch_len_max: usize,
}

/// Pause after a failed connect or copy, so a database outage costs one attempt per pause.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

const COLUMNS: &str = "provider_id, provider_tx_id, received_at, origin, peer, caller_ip, \
    method, target, headers, body, signature, status, answer, outcome, answered_by, duplicate, \
    lane, batch, batch_len, read_us, verify_us, queued_us, commit_us, total_us";

/// The types of [`COLUMNS`], in order.
const TYPES: &[Type] = &[
    Type::INT4,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
    Type::TEXT,
    Type::INT2,
    Type::BYTEA,
    Type::TEXT,
    Type::TEXT,
    Type::BOOL,
    Type::INT2,
    Type::INT8,
    Type::INT4,
    Type::INT4,
    Type::INT4,
    Type::INT4,
    Type::INT4,
    Type::INT4,
];

fn micros(d: Duration) -> i32 {
    i32::try_from(d.as_micros()).unwrap_or(i32::MAX)
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut records = Vec::with_capacity(self.batch_len_max);
        let mut flushes = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Record(record) => records.push(record),
                    Message::Flush(done) => flushes.push(done),
                }
                if records.len() < self.batch_len_max {
                    next = rx.try_recv().ok();
                }
            }
            if !records.is_empty() {
                let n = records.len();
                if let Err(e) = self.write(&records).await {
                    tracing::warn!(error = %e, records = n, "trace records not written");
                    metrics::counter!("wallet_trace_dropped_total", "reason" => "storage")
                        .increment(n as u64);
                    self.client = None;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                records.clear();
            }
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
    }

    async fn write(&mut self, records: &[Box<Record>]) -> Result<(), tokio_postgres::Error> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let (client, driver) = self.pg.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = driver.await {
                    tracing::debug!(error = %e, "trace connection ended");
                }
            });
            // Diagnostics, not money: this connection's commits do not wait for their own WAL
            // flush (the WAL writer flushes them within a fraction of a second), so the trace
            // never adds an fsync beside the lanes'. The lanes commit synchronously whatever
            // any other connection does; a crash may lose the last moment's trace rows, never
            // a ledger row.
            client.batch_execute("SET synchronous_commit = off").await?;
            self.client = Some(client);
        }
        let client = self.client.as_ref().expect("connected above");
        let sink = client
            .copy_in(&format!(
                "COPY callback_requests ({COLUMNS}) FROM STDIN BINARY"
            ))
            .await?;
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, TYPES));
        for r in records {
            let peer = r.peer.to_string();
            let caller = r.caller_ip.to_string();
            let settled = r.via.settled();
            let lane = settled.map(|s| s.lane as i16);
            let batch = settled.map(|s| s.batch as i64);
            let batch_len = settled.map(|s| s.batch_len as i32);
            let queued = settled.map(|s| micros(s.queued));
            let commit = settled.map(|s| micros(s.commit));
            let status = r.status as i16;
            for tx in &r.tx_ids {
                let row: [&(dyn ToSql + Sync); 24] = [
                    &r.provider_id,
                    tx,
                    &r.received_at,
                    &r.origin.as_str(),
                    &peer,
                    &caller,
                    &r.method,
                    &r.target,
                    &r.headers,
                    &r.body.as_ref(),
                    &r.signature,
                    &status,
                    &r.answer.as_ref(),
                    &r.outcome,
                    &r.via.as_str(),
                    &r.duplicate,
                    &lane,
                    &batch,
                    &batch_len,
                    &micros(r.read),
                    &micros(r.verify),
                    &queued,
                    &commit,
                    &micros(r.total),
                ];
                writer.as_mut().write(&row).await?;
            }
        }
        let written = writer.finish().await?;
        metrics::counter!("wallet_trace_records_total").increment(written);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_round_trip_and_hide_credentials() {
        let mut headers = HeaderMap::new();
        headers.insert("x-signature", "t=1,v1=abc".parse().unwrap());
        headers.insert("authorization", "Bearer secret".parse().unwrap());
        headers.append("x-forwarded-for", "10.0.0.1".parse().unwrap());
        headers.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        let lines = header_lines(&headers);
        assert!(!lines.contains("secret"), "{lines}");
        let back = parse_header_lines(&lines);
        assert_eq!(back.get("x-signature").unwrap(), "t=1,v1=abc");
        assert_eq!(back.get("authorization").unwrap(), "[redacted]");
        let forwarded: Vec<_> = back.get_all("x-forwarded-for").iter().collect();
        assert_eq!(forwarded, ["10.0.0.1", "10.0.0.2"]);
    }
}
