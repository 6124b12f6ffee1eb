//! The certificate's two files: JUnit XML for CI systems (one suite per provider, advisory
//! failures typed `advisory`) and a markdown report with a summary per dialect, every
//! scenario's verdict, the money each player was left with, and, for each failed scenario,
//! every request and answer as they went (bodies, status, timing).

use std::fmt::Write;

use super::session::money;
use super::{Certificate, Outcome};

/// The run as JUnit XML.
pub fn junit(cert: &Certificate) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"sim certify\" tests=\"{}\" failures=\"{}\" time=\"{:.3}\">",
        cert.outcomes.len(),
        cert.failed(),
        cert.elapsed.as_secs_f64()
    );
    for (provider, outcomes) in by_provider(cert) {
        let failures = outcomes.iter().filter(|o| !o.passed()).count();
        let seconds: f64 = outcomes.iter().map(|o| o.elapsed.as_secs_f64()).sum();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{} ({})\" tests=\"{}\" failures=\"{failures}\" time=\"{seconds:.3}\">",
            escape(provider),
            outcomes[0].kind.name(),
            outcomes.len()
        );
        for o in outcomes {
            let _ = write!(
                xml,
                "    <testcase classname=\"certify.{}\" name=\"{}\" time=\"{:.3}\"",
                escape(provider),
                o.scenario.name,
                o.elapsed.as_secs_f64()
            );
            match &o.result {
                Ok(()) => xml.push_str("/>\n"),
                Err(reason) => {
                    let kind = o.scenario.label("mandatory", "advisory");
                    let _ = writeln!(
                        xml,
                        ">\n      <failure type=\"{kind}\" message=\"{}\">{}</failure>\n    </testcase>",
                        escape(reason),
                        escape(&transcript(o))
                    );
                }
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// The run as a markdown certificate.
pub fn markdown(cert: &Certificate, at: &str) -> String {
    let mut md = String::from("# Wallet certification report\n\n");
    let verdict = if cert.certified() {
        "every mandatory scenario passed"
    } else {
        "mandatory scenarios failed"
    };
    let _ = writeln!(
        md,
        "Target `{}`, run {at} by `sim certify`, {:.1} s: **{}** ({verdict}).\n",
        cert.target,
        cert.elapsed.as_secs_f64(),
        cert.summary()
    );
    md.push_str("## Summary per provider\n\n");
    md.push_str("| provider | dialect | mandatory passed | mandatory failed | advisory passed | advisory failed |\n");
    md.push_str("|---|---|---:|---:|---:|---:|\n");
    for (provider, outcomes) in by_provider(cert) {
        let count = |mandatory: bool, passed: bool| {
            outcomes
                .iter()
                .filter(|o| o.scenario.mandatory == mandatory && o.passed() == passed)
                .count()
        };
        let _ = writeln!(
            md,
            "| {provider} | {} | {} | {} | {} | {} |",
            outcomes[0].kind.name(),
            count(true, true),
            count(true, false),
            count(false, true),
            count(false, false)
        );
    }
    md.push_str("\n## Scenarios\n\n| provider | scenario | mandatory | result | time | what it checks |\n|---|---|---|---|---:|---|\n");
    for o in &cert.outcomes {
        let (provider, name, checks) = (&o.provider, o.scenario.name, o.scenario.checks);
        let mandatory = o.scenario.label("yes", "advisory");
        let result = if o.passed() { "pass" } else { "**FAIL**" };
        let ms = o.elapsed.as_millis();
        let _ = writeln!(
            md,
            "| {provider} | `{name}` | {mandatory} | {result} | {ms} ms | {checks} |"
        );
    }
    md.push_str("\n## Money\n\nEach player's balance by the dialect's balance call before the first and after the last scenario played with it (every scenario gives back what it moved).\n\n| provider | player | before | after | change |\n|---|---|---:|---:|---:|\n");
    for (provider, outcomes) in by_provider(cert) {
        let before = outcomes.iter().find_map(|o| o.before);
        let after = outcomes.iter().rev().find_map(|o| o.after);
        let show = |b: Option<i64>| b.map_or("?".to_string(), money);
        let change = match (before, after) {
            (Some(b), Some(a)) => money(a - b),
            _ => "?".into(),
        };
        let _ = writeln!(
            md,
            "| {provider} | {} | {} | {} | {change} |",
            outcomes[0].player,
            show(before),
            show(after)
        );
    }
    let failed: Vec<&Outcome> = cert.outcomes.iter().filter(|o| !o.passed()).collect();
    if !failed.is_empty() {
        md.push_str("\n## Failed scenarios\n");
        for o in failed {
            let (provider, name) = (&o.provider, o.scenario.name);
            let advisory = o.scenario.label("", " (advisory)");
            let why = o.result.as_ref().err().map_or("", String::as_str);
            let _ = writeln!(md, "\n### {provider} · `{name}`{advisory}\n\n{why}\n");
            for (n, x) in o.exchanges.iter().enumerate() {
                let status = x.status.map_or("no answer".into(), |s| format!("HTTP {s}"));
                let _ = writeln!(
                    md,
                    "{}. {} — `POST {}` — {status} in {} ms",
                    n + 1,
                    x.label,
                    x.path,
                    x.elapsed.as_millis()
                );
                for (name, value) in &x.headers {
                    let _ = writeln!(md, "   - `{name}: {value}`");
                }
                let _ = writeln!(
                    md,
                    "\n   ```\n   > {}\n   < {}\n   ```\n",
                    x.sent.replace('\n', " "),
                    x.answer.replace('\n', " ")
                );
            }
        }
    }
    md
}

/// Every attempt of an outcome, one per line (for JUnit's failure text).
fn transcript(o: &Outcome) -> String {
    o.exchanges
        .iter()
        .map(|x| {
            format!(
                "{} POST {} -> {} in {} ms\n> {}\n< {}",
                x.label,
                x.path,
                x.status.map_or("no answer".into(), |s| s.to_string()),
                x.elapsed.as_millis(),
                x.sent,
                x.answer
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Outcomes grouped by provider, in run order.
fn by_provider(cert: &Certificate) -> Vec<(&str, Vec<&Outcome>)> {
    let mut groups: Vec<(&str, Vec<&Outcome>)> = Vec::new();
    for o in &cert.outcomes {
        match groups.iter_mut().find(|(p, _)| *p == o.provider) {
            Some((_, list)) => list.push(o),
            None => groups.push((&o.provider, vec![o])),
        }
    }
    groups
}

/// Text made safe for an XML attribute or element.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no place for other control characters.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}
