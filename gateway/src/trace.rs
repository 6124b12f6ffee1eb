//! Callbacks as received, kept for the back office's trace and replay. The pipeline hands a
//! [`Record`] to a bounded queue after it has answered; one writer task stores what queued up
//! as one compressed segment (`callback_segments`, one row and one statement per batch; the
//! format is `rest::segments`) on its own connection.
//! Nothing here is on the commit path: a full queue drops the record, a failed write drops its
//! batch (both counted in `wallet_trace_dropped_total`) and the writer reconnects; its commits
//! are asynchronous (no fsync of their own). A lost row costs a diagnosis, never money: the
//! ledger stays the record of what happened.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderMap;
use rest::segments;
use settlement::batch::Settled;
use tokio::sync::{mpsc, oneshot};

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

/// A kept callback's transaction ids: one for most, inline.
pub type TxIds = smallvec::SmallVec<[String; 1]>;

/// One callback that named transaction ids, as received and as answered.
#[derive(Debug)]
pub struct Record {
    pub provider_id: i32,
    /// Every transaction id the request named (each a key of the segment that stores it).
    pub tx_ids: TxIds,
    pub received_at: SystemTime,
    pub origin: Origin,
    pub peer: SocketAddr,
    pub caller_ip: IpAddr,
    pub method: http::Method,
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

/// Headers never stored: credentials, and the dialects' signatures (whoever reads a trace must
/// not be able to send the call again; a replay from the back office is not verified again).
const REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-signature",
    "x-request-sign",
    "x-hub88-signature",
];

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
            connection: None,
            batch_len_max: options.batch_len_max,
            linger: Duration::from_millis(options.linger_ms),
            segment: segments::Builder::default(),
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
    connection: Option<(tokio_postgres::Client, tokio_postgres::Statement)>,
    batch_len_max: usize,
    linger: Duration,
    segment: segments::Builder,
}

/// Pause after a failed connect or write, so a database outage costs one attempt per pause.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// While gathering, the writer looks at its queue this many times a linger (and sees a flush
/// within one such tick).
const GATHER_TICKS: u32 = 25;

const INSERT: &str = "INSERT INTO callback_segments (first_at, last_at, records, tx_keys, data)
    VALUES ($1, $2, $3, $4, $5)";

fn micros(d: Duration) -> i32 {
    i32::try_from(d.as_micros()).unwrap_or(i32::MAX)
}

/// The stored form of a record, borrowing its bytes.
fn traced<'r>(r: &'r Record, peer: &'r str, caller: &'r str) -> segments::Traced<'r> {
    let settled = r.via.settled();
    segments::Traced {
        provider_id: r.provider_id,
        tx_ids: r.tx_ids.iter().map(|t| Cow::Borrowed(t.as_str())).collect(),
        received_at: r.received_at,
        origin: Cow::Borrowed(r.origin.as_str()),
        peer: Cow::Borrowed(peer),
        caller_ip: Cow::Borrowed(caller),
        method: Cow::Borrowed(r.method.as_str()),
        target: Cow::Borrowed(&r.target),
        headers: Cow::Borrowed(&r.headers),
        body: Cow::Borrowed(&r.body),
        signature: Cow::Borrowed(r.signature),
        status: r.status,
        answer: Cow::Borrowed(&r.answer),
        outcome: Cow::Borrowed(r.outcome),
        answered_by: Cow::Borrowed(r.via.as_str()),
        duplicate: r.duplicate,
        lane: settled.map(|s| s.lane as i16),
        batch: settled.map(|s| s.batch as i64),
        batch_len: settled.map(|s| s.batch_len as i32),
        read_us: micros(r.read),
        verify_us: micros(r.verify),
        queued_us: settled.map(|s| micros(s.queued)),
        commit_us: settled.map(|s| micros(s.commit)),
        total_us: micros(r.total),
    }
}

/// Encodes `records` into `builder` and compresses them into a segment.
fn encode(
    builder: &mut segments::Builder,
    records: &[Record],
) -> std::io::Result<Option<segments::Segment>> {
    // Two buffers for the batch's addresses as text, not two strings a record.
    let (mut peer, mut caller) = (String::new(), String::new());
    for r in records {
        peer.clear();
        caller.clear();
        write!(peer, "{}", r.peer).expect("a String takes any text");
        write!(caller, "{}", r.caller_ip).expect("a String takes any text");
        builder.push(&traced(r, &peer, &caller));
    }
    builder.finish()
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut records = Vec::with_capacity(self.batch_len_max);
        let mut flushes = Vec::new();
        let mut arrived = Vec::with_capacity(self.batch_len_max);
        let tick = (self.linger / GATHER_TICKS).max(Duration::from_millis(1));
        while let Some(first) = rx.recv().await {
            // Gathers until the segment is full, the linger is over, or someone waits (flush).
            // It looks at the queue once a tick rather than at every record: waking this task
            // for each callback cost the pipeline more than storing the records did.
            let until = tokio::time::Instant::now() + self.linger;
            arrived.push(first);
            loop {
                for message in arrived.drain(..) {
                    match message {
                        Message::Record(record) => records.push(*record),
                        Message::Flush(done) => flushes.push(done),
                    }
                }
                let room = self.batch_len_max.saturating_sub(records.len());
                let now = tokio::time::Instant::now();
                if room == 0 || !flushes.is_empty() || now >= until {
                    break;
                }
                if rx.is_empty() {
                    if rx.is_closed() {
                        break;
                    }
                    tokio::time::sleep_until(until.min(now + tick)).await;
                }
                while arrived.len() < room {
                    match rx.try_recv() {
                        Ok(message) => arrived.push(message),
                        Err(_) => break,
                    }
                }
            }
            if !records.is_empty() {
                let n = records.len();
                if let Err(e) = self.write(&mut records).await {
                    tracing::warn!(error = %e, records = n, "trace records not written");
                    metrics::counter!("wallet_trace_dropped_total", "reason" => "storage")
                        .increment(n as u64);
                    self.connection = None;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                records.clear();
            }
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
    }

    /// Writes `records` as one segment (one row, one statement). They are encoded and
    /// compressed on the blocking pool: a segment of thousands of records is milliseconds of
    /// CPU, which would hold up a runtime thread (beside the embedded cluster on two cores, the
    /// only one) and every callback waiting for it.
    async fn write(&mut self, records: &mut Vec<Record>) -> Result<(), tokio_postgres::Error> {
        let n = records.len();
        let (mut builder, batch) = (std::mem::take(&mut self.segment), std::mem::take(records));
        let encoded = tokio::task::spawn_blocking(move || {
            let finished = encode(&mut builder, &batch);
            (finished, builder, batch)
        })
        .await;
        let finished = match encoded {
            Ok((finished, builder, batch)) => {
                (self.segment, *records) = (builder, batch);
                finished
            }
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        let segment = match finished {
            Ok(Some(segment)) => segment,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, records = n, "trace segment not compressed");
                metrics::counter!("wallet_trace_dropped_total", "reason" => "storage")
                    .increment(n as u64);
                return Ok(());
            }
        };
        if self.connection.as_ref().is_none_or(|(c, _)| c.is_closed()) {
            let (client, driver) = self.pg.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = driver.await {
                    tracing::debug!(error = %e, "trace connection ended");
                }
            });
            // Diagnostics, not money: this connection's commits do not wait for their own WAL
            // flush (the WAL writer flushes them within a fraction of a second), so the trace
            // never adds an fsync beside the lanes'. The lanes commit synchronously whatever
            // any other connection does; a crash may lose the last moment's segments, never a
            // ledger row.
            client.batch_execute("SET synchronous_commit = off").await?;
            let insert = client.prepare(INSERT).await?;
            self.connection = Some((client, insert));
        }
        let (client, insert) = self.connection.as_ref().expect("connected above");
        client
            .execute(
                insert,
                &[
                    &segment.first_at,
                    &segment.last_at,
                    &segment.records,
                    &segment.tx_keys,
                    &segment.data,
                ],
            )
            .await?;
        metrics::counter!("wallet_trace_records_total").increment(segment.records as u64);
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
        // Signatures are not kept either (a trace reader must not be able to send it again).
        assert!(!lines.contains("v1=abc"), "{lines}");
        assert_eq!(back.get("x-signature").unwrap(), "[redacted]");
        assert_eq!(back.get("authorization").unwrap(), "[redacted]");
        let forwarded: Vec<_> = back.get_all("x-forwarded-for").iter().collect();
        assert_eq!(forwarded, ["10.0.0.1", "10.0.0.2"]);
    }
}
