//! Caller addresses behind trusted proxies.

use std::net::IpAddr;

use super::caller_ip;

fn check(peer: &str, forwarded: &[&str], trusted: &[&str], expect: &str) {
    let mut headers = http::HeaderMap::new();
    for value in forwarded {
        headers.append("x-forwarded-for", value.parse().unwrap());
    }
    let trusted: Vec<IpAddr> = trusted.iter().map(|t| t.parse().unwrap()).collect();
    let got = caller_ip(peer.parse().unwrap(), &headers, &trusted);
    assert_eq!(
        got,
        expect.parse::<IpAddr>().unwrap(),
        "{peer} {forwarded:?}"
    );
}

#[test]
fn forwarded_addresses_count_only_from_trusted_proxies() {
    // No trusted proxies: the header is the caller's own words and is ignored.
    check("203.0.113.9", &["10.9.8.7"], &[], "203.0.113.9");
    // An untrusted peer cannot claim another address.
    check("203.0.113.9", &["10.9.8.7"], &["127.0.0.1"], "203.0.113.9");
    // Through one trusted proxy.
    check("127.0.0.1", &["10.9.8.7"], &["127.0.0.1"], "10.9.8.7");
    // The right-most untrusted entry wins; what the caller wrote to its left is ignored.
    check(
        "127.0.0.1",
        &["1.1.1.1, 10.9.8.7"],
        &["127.0.0.1"],
        "10.9.8.7",
    );
    // Chained trusted proxies are skipped, across repeated headers too.
    check(
        "127.0.0.1",
        &["10.9.8.7, 127.0.0.2", "127.0.0.3"],
        &["127.0.0.1", "127.0.0.2", "127.0.0.3"],
        "10.9.8.7",
    );
    // Mapped IPv4 peers are the same address.
    check(
        "::ffff:127.0.0.1",
        &["10.9.8.7"],
        &["127.0.0.1"],
        "10.9.8.7",
    );
    // Nothing usable forwarded: the proxy itself.
    check("127.0.0.1", &[], &["127.0.0.1"], "127.0.0.1");
    check("127.0.0.1", &["not-an-ip"], &["127.0.0.1"], "127.0.0.1");
}
