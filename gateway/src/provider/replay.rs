//! The back office's desk on the callback pipeline: a stored callback decoded again, or sent
//! through the whole pipeline again (dedup, settlement, rendering) with its time checks judged
//! as of its arrival; not its signature, which passed when it arrived and which traces do not
//! keep. A replay of a settled callback must come back a duplicate
//! with the original answer; anything else is what the back office reports.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use http_body_util::Full;
use rest::desk::{CallbackDesk, Pending, Replayed, StoredCallback};

use super::callback::{self, Arrival};
use super::{provider_of, with_dialect, Decoded, Dialect, Inbound};
use crate::state::State;
use crate::trace::{self, Origin};

/// The gateway's [`CallbackDesk`]; holds the state weakly (the state holds the REST module).
#[derive(Debug)]
pub struct Desk(pub Weak<State>);

impl CallbackDesk for Desk {
    fn decode(&self, stored: &StoredCallback) -> Result<String, String> {
        let state = self.0.upgrade().ok_or("the gateway is stopping")?;
        decode(&state, stored)
    }

    fn replay(&self, stored: StoredCallback) -> Pending<'_, Result<Replayed, String>> {
        Box::pin(async move {
            let state = self.0.upgrade().ok_or("the gateway is stopping")?;
            replay(&state, stored).await
        })
    }

    fn metrics(&self) -> String {
        self.0
            .upgrade()
            .map(|state| state.metrics.render())
            .unwrap_or_default()
    }
}

/// The stored request rebuilt for `dialect`: its credential restored, its headers parsed.
fn request<D: Dialect>(
    dialect: &D,
    provider: &crate::registry::Provider,
    stored: &StoredCallback,
) -> Result<http::Request<Full<Bytes>>, String> {
    let target = dialect.restore_target(provider, &stored.target);
    let mut request = http::Request::builder()
        .method(stored.method.as_str())
        .uri(target.as_ref())
        .body(Full::new(Bytes::from(stored.body.clone())))
        .map_err(|e| format!("the stored request does not parse: {e}"))?;
    *request.headers_mut() = trace::parse_header_lines(&stored.headers);
    Ok(request)
}

fn path_of(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

pub fn decode(state: &State, stored: &StoredCallback) -> Result<String, String> {
    let (provider, path) = provider_of(state, path_of(&stored.target))
        .ok_or_else(|| format!("provider {:?} is not configured now", stored.provider))?;
    with_dialect!(provider.dialect, |d| {
        let request = request(&d, &provider, stored)?;
        let action = d
            .action(&path)
            .ok_or_else(|| format!("{path:?} names no action"))?;
        let body = Bytes::from(stored.body.clone());
        let inbound = Inbound {
            action: &action,
            headers: request.headers(),
            query: request.uri().query(),
            body: &body,
            now_s: 0,
        };
        match d.decode(&provider, &inbound) {
            Ok(Decoded::Command(command, _)) => Ok(format!("{command:#?}")),
            Ok(Decoded::Unit(commands, _)) => Ok(format!("{commands:#?}")),
            Ok(Decoded::UnsupportedCurrency { player, .. }) => {
                Ok(format!("unsupported currency (player {player:?})"))
            }
            Err(refusal) => Err(refusal.message()),
        }
    })
}

pub async fn replay(state: &Arc<State>, stored: StoredCallback) -> Result<Replayed, String> {
    let (provider, path) = provider_of(state, path_of(&stored.target))
        .ok_or_else(|| format!("provider {:?} is not configured now", stored.provider))?;
    let peer = stored
        .peer
        .parse()
        .map_err(|_| format!("stored peer {:?} is not an address", stored.peer))?;
    let arrival = Arrival {
        peer,
        at: stored.received_at,
        origin: Origin::Replay,
    };
    with_dialect!(provider.dialect, |d| {
        let request = request(&d, &provider, &stored)?;
        let handled = callback::handle(state, &provider, &d, &path, arrival, request).await;
        let record = handled
            .record
            .ok_or("the replay named no transaction (the dialect decoded it otherwise)")?;
        let replayed = Replayed {
            status: record.status,
            answer: record.answer.to_vec(),
            outcome: record.outcome.to_string(),
            duplicate: record.duplicate,
            answered_by: record.via.as_str().to_string(),
            same_answer: d.same_answer(&stored.answer, &record.answer),
        };
        state.trace.keep(record);
        Ok(replayed)
    })
}
