//! `GET /api/admin/live`: a few of the gateway's own counters as JSON, for the console's live
//! view (callbacks a second, their p99, batch sizes). The figures are cumulative since the
//! gateway started; the console takes the differences between two samples.

use std::sync::Arc;

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::envelope::{ok, ApiError, ApiResult, Ok};
use crate::Rest;

#[derive(Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct Live {
    /// When the sample was taken, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Callbacks answered (every provider, action and outcome).
    pub callbacks: u64,
    /// The callbacks' time to answer: cumulative counts by upper bound in seconds (`null`:
    /// no bound), in increasing order.
    pub latency_buckets: Vec<Bucket>,
    /// Batches committed, and the commands they held.
    pub batches: u64,
    pub batched_commands: u64,
}

#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub struct Bucket {
    pub le: Option<f64>,
    pub count: u64,
}

#[utoipa::path(get, path = "/api/admin/live", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "the gateway's counters now", body = Live),
              (status = 503, description = "the callback pipeline is not attached", body = crate::envelope::ErrorBody)))]
pub async fn live(State(rest): State<Arc<Rest>>) -> ApiResult<Ok<Live>> {
    let desk = rest
        .desk
        .get()
        .ok_or_else(|| ApiError::internal("live", &"no callback pipeline attached"))?;
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ok(Live {
        at_ms,
        ..read(&desk.metrics())
    })
}

/// The figures of a Prometheus text exposition, summed over every label but `le`.
fn read(text: &str) -> Live {
    let mut live = Live::default();
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Result::Ok(value) = value.parse::<f64>() else {
            continue;
        };
        // Counts are whole numbers in the text.
        let count = value.max(0.0).round() as u64;
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        match name {
            "wallet_callbacks_total" => live.callbacks += count,
            "wallet_batch_size_count" => live.batches += count,
            "wallet_batch_size_sum" => live.batched_commands += count,
            "wallet_callback_seconds_bucket" => {
                let Some(le) = label(labels, "le").and_then(|v| v.parse::<f64>().ok()) else {
                    continue;
                };
                match buckets.iter_mut().find(|(b, _)| *b == le) {
                    Some((_, n)) => *n += count,
                    None => buckets.push((le, count)),
                }
            }
            _ => {}
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    live.latency_buckets = buckets
        .into_iter()
        .map(|(le, count)| Bucket {
            le: le.is_finite().then_some(le),
            count,
        })
        .collect();
    live
}

/// The value of label `name` in `a="x",b="y"}`.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels
        .trim_end_matches('}')
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_label_set_and_orders_the_buckets() {
        let text = r#"# TYPE wallet_callbacks_total counter
wallet_callbacks_total{provider="demo",action="bet",outcome="OK"} 7
wallet_callbacks_total{provider="pp",action="win",outcome="OK"} 3
wallet_callback_seconds_bucket{provider="demo",action="bet",le="0.005"} 5
wallet_callback_seconds_bucket{provider="demo",action="bet",le="+Inf"} 7
wallet_callback_seconds_bucket{provider="pp",action="win",le="0.005"} 1
wallet_callback_seconds_bucket{provider="pp",action="win",le="+Inf"} 3
wallet_callback_seconds_sum{provider="pp",action="win"} 0.02
wallet_batch_size_sum 10
wallet_batch_size_count 4
"#;
        let live = read(text);
        assert_eq!(live.callbacks, 10);
        assert_eq!((live.batches, live.batched_commands), (4, 10));
        assert_eq!(
            live.latency_buckets,
            vec![
                Bucket {
                    le: Some(0.005),
                    count: 6
                },
                Bucket {
                    le: None,
                    count: 10
                },
            ]
        );
    }
}
