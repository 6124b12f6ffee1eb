//! What a run measured: per-connection HDR histograms and status counts (`Tally`), merged into
//! the run's `Summary` with its percentiles, timeline, refusals and the line it prints.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::*;

/// What one worker saw.
pub(crate) struct Tally {
    /// From the intended send time: what a provider sees, queueing included.
    pub(crate) all: Histogram<u64>,
    pub(crate) duplicates: Histogram<u64>,
    /// From the moment the request went out on a connection: the target's own time.
    pub(crate) service: Histogram<u64>,
    pub(crate) statuses: std::collections::BTreeMap<String, u64>,
    pub(crate) transport_errors: u64,
    pub(crate) completed: u64,
    /// Measured requests on the wire when the run's hard stop came.
    pub(crate) unanswered: u64,
    /// When the last measured request was answered.
    pub(crate) last_answer: Option<Instant>,
    /// Every measured answer as (its `Job::second`, latency in µs): the `--timeline`.
    pub(crate) answers: Vec<(u32, u32)>,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            all: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
            duplicates: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
            service: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
            statuses: Default::default(),
            transport_errors: 0,
            completed: 0,
            unanswered: 0,
            last_answer: None,
            answers: Vec::new(),
        }
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        let _ = self.all.add(&other.all);
        let _ = self.duplicates.add(&other.duplicates);
        let _ = self.service.add(&other.service);
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.transport_errors += other.transport_errors;
        self.completed += other.completed;
        self.unanswered += other.unanswered;
        self.last_answer = self.last_answer.max(other.last_answer);
        self.answers.extend(other.answers);
    }

    /// Per measured second: (second, answered, p50, p99, max), latencies in ms.
    pub(crate) fn timeline(&self) -> Vec<(u32, usize, f64, f64, f64)> {
        self.windows(1)
    }

    /// The same per window of `seconds` (the window's number first): per minute for a soak.
    pub(crate) fn windows(&self, seconds: u32) -> Vec<(u32, usize, f64, f64, f64)> {
        let mut answers = self.answers.clone();
        answers.sort_unstable();
        answers
            .chunk_by(|a, b| a.0 / seconds == b.0 / seconds)
            .map(|window| {
                let mut latencies: Vec<u32> = window.iter().map(|a| a.1).collect();
                latencies.sort_unstable();
                let at = |q: f64| {
                    let i =
                        ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
                    f64::from(latencies[i - 1]) / 1000.0
                };
                (
                    window[0].0 / seconds,
                    latencies.len(),
                    at(0.50),
                    at(0.99),
                    at(1.0),
                )
            })
            .collect()
    }
}

pub(crate) struct Summary {
    pub(crate) tally: Tally,
    /// From the end of the warm-up to the last answer (at least the scheduled duration): an
    /// overloaded target that answers late does not get credit for the offered rate.
    pub(crate) measured_s: f64,
    /// Wall-clock time (Unix ms) the measured part began: second 0 of the `--timeline`.
    pub(crate) measured_from_unix_ms: u128,
    /// Requests scheduled in the measured part.
    pub(crate) sent: u64,
    /// Of those, never sent: the generator's backlog (10 s of requests) was full.
    pub(crate) unsent: u64,
    /// Of those, sent or queued but not answered `--drain` seconds after the schedule ended.
    pub(crate) unanswered: u64,
}

impl Summary {
    pub(crate) fn percentiles_ms(h: &Histogram<u64>) -> [(String, f64); 6] {
        let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
        [
            ("p50".into(), q(0.50)),
            ("p90".into(), q(0.90)),
            ("p99".into(), q(0.99)),
            ("p99.9".into(), q(0.999)),
            ("max".into(), h.max() as f64 / 1000.0),
            ("mean".into(), h.mean() / 1000.0),
        ]
    }

    pub(crate) fn achieved(&self) -> f64 {
        self.tally.completed as f64 / self.measured_s
    }

    pub(crate) fn to_json(&self, args: &Args) -> serde_json::Value {
        let pct = |h: &Histogram<u64>| -> serde_json::Value {
            Self::percentiles_ms(h)
                .into_iter()
                .map(|(k, v)| (k, serde_json::json!(v)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let mut summary = serde_json::json!({
            "mode": format!("{:?}", args.mode).to_lowercase(),
            "mix": args.mix.name(),
            "offered_rate": args.rate,
            "duration_s": args.duration,
            "sent": self.sent,
            "unsent": self.unsent,
            "unanswered": self.unanswered,
            "completed": self.tally.completed,
            "achieved_rate": self.achieved(),
            "latency_ms": pct(&self.tally.all),
            "duplicates": self.tally.duplicates.len(),
            "duplicate_latency_ms": pct(&self.tally.duplicates),
            "service_ms": pct(&self.tally.service),
            "statuses": self.tally.statuses,
            "transport_errors": self.tally.transport_errors,
        });
        if args.timeline {
            summary["measured_from_unix_ms"] = serde_json::json!(self.measured_from_unix_ms);
            summary["timeline"] = self
                .tally
                .timeline()
                .into_iter()
                .map(|(second, answered, p50, p99, max)| {
                    serde_json::json!({
                        "second": second,
                        "answered": answered,
                        "p50_ms": p50,
                        "p99_ms": p99,
                        "max_ms": max,
                    })
                })
                .collect();
            // Per minute and per five minutes (by intended send time), for soaks and
            // rollovers.
            for (key, seconds) in [("minutes", 60), ("five_minutes", 300)] {
                summary[key] = self
                    .tally
                    .windows(seconds)
                    .into_iter()
                    .map(|(window, answered, p50, p99, max)| {
                        serde_json::json!({
                            "window": window,
                            "answered": answered,
                            "p50_ms": p50,
                            "p99_ms": p99,
                            "max_ms": max,
                        })
                    })
                    .collect();
            }
        }
        summary
    }

    pub(crate) fn print(&self, args: &Args) {
        println!(
            "offered {}/s for {} s ({:?}, mix {}); sent {}, completed {}, achieved {:.0}/s",
            args.rate,
            args.duration,
            args.mode,
            args.mix.name(),
            self.sent,
            self.tally.completed,
            self.achieved()
        );
        let line = |name: &str, h: &Histogram<u64>| {
            let p: Vec<String> = Self::percentiles_ms(h)
                .iter()
                .map(|(k, v)| format!("{k} {v:.2}"))
                .collect();
            println!(
                "{name:<11} latency ms (from intended send): {}",
                p.join("  ")
            );
        };
        line("all", &self.tally.all);
        if !self.tally.duplicates.is_empty() {
            line("duplicates", &self.tally.duplicates);
        }
        let p: Vec<String> = Self::percentiles_ms(&self.tally.service)
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        println!(
            "service     ms (from the request leaving): {}",
            p.join("  ")
        );
        for (status, n) in &self.tally.statuses {
            println!("  {status:<32} {n}");
        }
        println!(
            "  transport errors                 {}",
            self.tally.transport_errors
        );
        if self.unsent > 0 {
            println!("  never sent (10 s backlog full)   {}", self.unsent);
        }
        if self.unanswered > 0 {
            println!("  unanswered at the end of --drain {}", self.unanswered);
        }
        if args.timeline {
            println!(
                "second  answered   p50 ms   p99 ms   max ms  (by intended send time; second 0 began at Unix ms {})",
                self.measured_from_unix_ms
            );
            for (second, answered, p50, p99, max) in self.tally.timeline() {
                println!("{second:>6}  {answered:>8}  {p50:>7.2}  {p99:>7.2}  {max:>7.2}");
            }
        }
    }
}
