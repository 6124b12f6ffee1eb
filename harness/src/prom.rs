//! Reading the gateway's `/metrics` (Prometheus text exposition): a counter or gauge summed
//! over its label sets, and a histogram's cumulative buckets.
#![allow(clippy::float_arithmetic)] // sums of samples, never money

/// The sum of every sample whose line starts with `line_prefix` (a metric name, or a name with
/// the start of its labels), truncated to an integer.
pub fn sum(text: &str, line_prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(line_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Bucket counts of histogram `name`, as `(le, cumulative count)` in bucket order; series of
/// several label sets are summed bucket by bucket.
pub fn histogram(text: &str, name: &str) -> Vec<(String, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, String, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?.to_string();
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let v: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((bound, le, v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut summed: Vec<(String, f64)> = Vec::new();
    for (_, le, v) in buckets {
        match summed.last_mut() {
            Some((last, total)) if *last == le => *total += v,
            _ => summed.push((le, v)),
        }
    }
    summed
}

#[cfg(test)]
mod tests {
    use super::{histogram, sum};

    const TEXT: &str = "# TYPE wallet_callbacks_total counter
wallet_callbacks_total{provider=\"a\"} 3
wallet_callbacks_total{provider=\"b\"} 4
wallet_batch_size_bucket{le=\"1\"} 2
wallet_batch_size_bucket{le=\"+Inf\"} 5
wallet_batch_size_bucket{lane=\"x\",le=\"1\"} 1
wallet_batch_size_bucket{lane=\"x\",le=\"+Inf\"} 1
";

    #[test]
    fn sums_label_sets_and_buckets() {
        assert_eq!(sum(TEXT, "wallet_callbacks_total"), 7);
        assert_eq!(sum(TEXT, "wallet_callbacks_total{provider=\"b\""), 4);
        assert_eq!(
            histogram(TEXT, "wallet_batch_size"),
            vec![("1".to_string(), 3.0), ("+Inf".to_string(), 6.0)]
        );
    }
}
