//! How kept callbacks are stored: many records to a row of `callback_segments`, framed and
//! zstd-compressed, each row indexed by the keys of the transaction ids its records name. It
//! exists so the gateway's trace writer (which encodes) and the back office (which decodes)
//! share one format, and so keeping raw callbacks costs one row per write batch rather than
//! one row and one index entry per callback.
//!
//! A segment's `data` is a version byte, then one zstd frame (its content size in the header)
//! of the records back to back; each record is a sequence of fields in a fixed order: integers
//! little-endian, text and bytes as a `u32` length and the bytes, optional integers as a flag
//! byte and the value. Decoding checks every length; a damaged segment is an error, never a
//! panic.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// The format of `data` this code writes (and the only one it reads).
const VERSION: u8 = 1;

/// A segment's uncompressed size is at most this (the writer's batches are far smaller).
const UNCOMPRESSED_MAX: u64 = 256 << 20;

/// zstd's fastest regular level: most of the ratio of the default for well under half its
/// time on these records.
const LEVEL: i32 = 1;

/// One callback as kept: the request as received and the answer as sent, borrowed when
/// encoding and owned when decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traced<'a> {
    pub provider_id: i32,
    /// Every transaction id the request named.
    pub tx_ids: Vec<Cow<'a, str>>,
    pub received_at: SystemTime,
    /// `provider` (from the wire) or `replay`.
    pub origin: Cow<'a, str>,
    /// The TCP peer, `ip:port`.
    pub peer: Cow<'a, str>,
    /// The caller's address after the trusted-proxy rule.
    pub caller_ip: Cow<'a, str>,
    pub method: Cow<'a, str>,
    /// Path and query (a credential that is the shared secret itself blanked).
    pub target: Cow<'a, str>,
    /// "name: value" lines, credentials blanked.
    pub headers: Cow<'a, str>,
    pub body: Cow<'a, [u8]>,
    /// How the credentials were checked (the dialect's scheme).
    pub signature: Cow<'a, str>,
    pub status: u16,
    pub answer: Cow<'a, [u8]>,
    pub outcome: Cow<'a, str>,
    /// `batch`, `dedup_index`, `twin` or `refused`.
    pub answered_by: Cow<'a, str>,
    pub duplicate: bool,
    /// The settling commit: lane, the lane's batch counter, commands in the batch.
    pub lane: Option<i16>,
    pub batch: Option<i64>,
    pub batch_len: Option<i32>,
    /// Microseconds: body read, signature check, queued, the batch's transaction, in all.
    pub read_us: i32,
    pub verify_us: i32,
    pub queued_us: Option<i32>,
    pub commit_us: Option<i32>,
    pub total_us: i32,
}

/// Whether a record is found by time rather than by key: a first application (answered by
/// the batch that wrote its transactions, not a duplicate) lies in a segment whose time range
/// holds the transaction rows' `created_at` (its batch began after it arrived and before it
/// was answered), so its ids need no index entry. Every other record (a retry, a refusal, a
/// replay) is keyed. Most callbacks are first applications: this keeps the per-key index to
/// the exceptions, the one part of keeping callbacks that cost a write per callback.
pub fn located_by_time(r: &Traced<'_>) -> bool {
    r.answered_by == "batch" && !r.duplicate
}

/// The index key of a transaction id: the first 8 bytes of SHA-256 over the provider id and
/// the id. Different ids may share a key; readers compare the ids themselves.
pub fn tx_key(provider_id: i32, tx: &str) -> i64 {
    let mut hash = Sha256::new();
    hash.update(provider_id.to_le_bytes());
    hash.update(tx.as_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_le_bytes(first)
}

/// A segment being filled (the writer keeps one and reuses its buffers).
#[derive(Debug, Default)]
pub struct Builder {
    raw: Vec<u8>,
    keys: Vec<i64>,
    records: i32,
    first: Option<SystemTime>,
    last: Option<SystemTime>,
}

/// A segment ready to store.
#[derive(Debug)]
pub struct Segment {
    pub first_at: SystemTime,
    pub last_at: SystemTime,
    pub records: i32,
    /// Sorted, without repeats.
    pub tx_keys: Vec<i64>,
    pub data: Vec<u8>,
}

impl Builder {
    pub fn push(&mut self, r: &Traced<'_>) {
        let raw = &mut self.raw;
        put_i32(raw, r.provider_id);
        put_u32(raw, r.tx_ids.len() as u32);
        let keyed = !located_by_time(r);
        for tx in &r.tx_ids {
            put_bytes(raw, tx.as_bytes());
            if keyed {
                self.keys.push(tx_key(r.provider_id, tx));
            }
        }
        put_i64(raw, micros_since_epoch(r.received_at));
        for text in [
            &r.origin,
            &r.peer,
            &r.caller_ip,
            &r.method,
            &r.target,
            &r.headers,
        ] {
            put_bytes(raw, text.as_bytes());
        }
        put_bytes(raw, &r.body);
        put_bytes(raw, r.signature.as_bytes());
        raw.extend_from_slice(&r.status.to_le_bytes());
        put_bytes(raw, &r.answer);
        put_bytes(raw, r.outcome.as_bytes());
        put_bytes(raw, r.answered_by.as_bytes());
        raw.push(u8::from(r.duplicate));
        put_opt(raw, r.lane.map(i64::from));
        put_opt(raw, r.batch);
        put_opt(raw, r.batch_len.map(i64::from));
        put_i32(raw, r.read_us);
        put_i32(raw, r.verify_us);
        put_opt(raw, r.queued_us.map(i64::from));
        put_opt(raw, r.commit_us.map(i64::from));
        put_i32(raw, r.total_us);
        self.records += 1;
        self.first = Some(self.first.map_or(r.received_at, |f| f.min(r.received_at)));
        self.last = Some(self.last.map_or(r.received_at, |l| l.max(r.received_at)));
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Compresses what was pushed into a segment (`None` if nothing was) and starts over.
    pub fn finish(&mut self) -> std::io::Result<Option<Segment>> {
        let (Some(first_at), Some(last_at)) = (self.first.take(), self.last.take()) else {
            return Ok(None);
        };
        let mut data = Vec::with_capacity(1 + self.raw.len() / 3);
        data.push(VERSION);
        let packed = zstd::bulk::compress(&self.raw, LEVEL);
        self.raw.clear();
        data.extend_from_slice(&packed?);
        let mut tx_keys = std::mem::take(&mut self.keys);
        tx_keys.sort_unstable();
        tx_keys.dedup();
        let records = std::mem::take(&mut self.records);
        Ok(Some(Segment {
            first_at,
            last_at,
            records,
            tx_keys,
            data,
        }))
    }
}

/// The records of a segment's `data`.
pub fn decode(data: &[u8]) -> Result<Vec<Traced<'static>>, String> {
    let (&version, packed) = data.split_first().ok_or("empty segment")?;
    if version != VERSION {
        return Err(format!(
            "segment format {version}, this build reads {VERSION}"
        ));
    }
    let size = zstd::zstd_safe::get_frame_content_size(packed)
        .ok()
        .flatten()
        .ok_or("not a zstd frame with its size")?;
    if size > UNCOMPRESSED_MAX {
        return Err(format!("segment claims {size} bytes"));
    }
    let raw = zstd::bulk::decompress(packed, size as usize).map_err(|e| e.to_string())?;
    if raw.len() as u64 != size {
        return Err("segment shorter than its header says".into());
    }
    let mut reader = Reader { rest: &raw };
    let mut records = Vec::new();
    while !reader.rest.is_empty() {
        records.push(reader.record()?);
    }
    Ok(records)
}

struct Reader<'r> {
    rest: &'r [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.rest.len() < n {
            return Err("segment cut short".into());
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }

    fn text(&mut self) -> Result<Cow<'static, str>, String> {
        String::from_utf8(self.bytes()?)
            .map(Cow::Owned)
            .map_err(|_| "text that is not UTF-8".into())
    }

    fn opt(&mut self) -> Result<Option<i64>, String> {
        match self.array::<1>()?[0] {
            0 => Ok(None),
            1 => self.i64().map(Some),
            other => Err(format!("option flag {other}")),
        }
    }

    fn narrow<T: TryFrom<i64>>(&mut self) -> Result<Option<T>, String> {
        self.opt()?
            .map(|v| T::try_from(v).map_err(|_| "value out of range".to_string()))
            .transpose()
    }

    fn record(&mut self) -> Result<Traced<'static>, String> {
        let provider_id = self.i32()?;
        let n = self.u32()? as usize;
        if n > self.rest.len() / 4 {
            return Err("more transaction ids than bytes".into());
        }
        let mut tx_ids = Vec::with_capacity(n);
        for _ in 0..n {
            tx_ids.push(self.text()?);
        }
        let received_at = from_micros(self.i64()?);
        Ok(Traced {
            provider_id,
            tx_ids,
            received_at,
            origin: self.text()?,
            peer: self.text()?,
            caller_ip: self.text()?,
            method: self.text()?,
            target: self.text()?,
            headers: self.text()?,
            body: Cow::Owned(self.bytes()?),
            signature: self.text()?,
            status: u16::from_le_bytes(self.array()?),
            answer: Cow::Owned(self.bytes()?),
            outcome: self.text()?,
            answered_by: self.text()?,
            duplicate: self.array::<1>()?[0] != 0,
            lane: self.narrow()?,
            batch: self.opt()?,
            batch_len: self.narrow()?,
            read_us: self.i32()?,
            verify_us: self.i32()?,
            queued_us: self.narrow()?,
            commit_us: self.narrow()?,
            total_us: self.i32()?,
        })
    }
}

fn put_i32(raw: &mut Vec<u8>, v: i32) {
    raw.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(raw: &mut Vec<u8>, v: u32) {
    raw.extend_from_slice(&v.to_le_bytes());
}

fn put_i64(raw: &mut Vec<u8>, v: i64) {
    raw.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(raw: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(raw, u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    raw.extend_from_slice(&bytes[..bytes.len().min(u32::MAX as usize)]);
}

fn put_opt(raw: &mut Vec<u8>, v: Option<i64>) {
    match v {
        None => raw.push(0),
        Some(v) => {
            raw.push(1);
            put_i64(raw, v);
        }
    }
}

fn micros_since_epoch(at: SystemTime) -> i64 {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

fn from_micros(us: i64) -> SystemTime {
    let magnitude = Duration::from_micros(us.unsigned_abs());
    if us >= 0 {
        SystemTime::UNIX_EPOCH + magnitude
    } else {
        SystemTime::UNIX_EPOCH - magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(tx: &str, body: &[u8]) -> Traced<'static> {
        Traced {
            provider_id: 7,
            tx_ids: vec![Cow::Owned(tx.to_string()), Cow::Borrowed("second")],
            received_at: SystemTime::UNIX_EPOCH + Duration::from_micros(1_763_900_000_123_456),
            origin: "provider".into(),
            peer: "127.0.0.1:50000".into(),
            caller_ip: "10.0.0.1".into(),
            method: "POST".into(),
            target: "/api/provider-callback/demo/bet".into(),
            headers: "content-type: application/json\nx-signature: ab".into(),
            body: Cow::Owned(body.to_vec()),
            signature: "hmac-sha256".into(),
            status: 200,
            answer: Cow::Borrowed(b"{\"status\":\"OK\"}"),
            outcome: "OK".into(),
            answered_by: "batch".into(),
            duplicate: false,
            lane: Some(1),
            batch: Some(i64::MAX),
            batch_len: Some(300),
            read_us: 12,
            verify_us: 3,
            queued_us: None,
            commit_us: Some(900),
            total_us: 1_200,
        }
    }

    #[test]
    fn records_come_back_as_they_went_in_with_their_keys() {
        let mut builder = Builder::default();
        let mut retry = sample("t-2", &[0xff, 0, 1]);
        retry.duplicate = true;
        let mut refused = sample("t-3", b"");
        refused.answered_by = "refused".into();
        let records = [sample("t-1", b"{\"a\":1}"), retry, refused];
        for r in &records {
            builder.push(r);
        }
        let segment = builder.finish().unwrap().expect("three records");
        assert_eq!(segment.records, 3);
        // The first application is found by time; the retry and the refusal by key.
        let mut keys = vec![tx_key(7, "t-2"), tx_key(7, "t-3"), tx_key(7, "second")];
        keys.sort_unstable();
        assert_eq!(segment.tx_keys, keys);
        assert_eq!(decode(&segment.data).unwrap(), records);
        assert!(builder.is_empty() && builder.finish().unwrap().is_none());
    }

    #[test]
    fn keys_depend_on_the_provider_and_the_id() {
        assert_ne!(tx_key(1, "x"), tx_key(2, "x"));
        assert_ne!(tx_key(1, "x"), tx_key(1, "y"));
        assert_eq!(tx_key(1, "x"), tx_key(1, "x"));
    }

    #[test]
    fn damaged_segments_are_errors() {
        let mut builder = Builder::default();
        builder.push(&sample("t-1", b"body"));
        let data = builder.finish().unwrap().unwrap().data;
        assert!(decode(&[]).is_err());
        assert!(decode(&[2]).is_err(), "unknown version");
        for cut in 1..data.len() {
            assert!(decode(&data[..cut]).is_err(), "cut at {cut}");
        }
        // Every single-byte change either fails or decodes to something (never panics).
        for i in 0..data.len() {
            let mut bent = data.clone();
            bent[i] ^= 0x5a;
            let _ = decode(&bent);
        }
    }
}
