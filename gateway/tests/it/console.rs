//! The back-office console is served by the gateway at `/console/` on the API's origin, with
//! its security headers, only when the REST module is on.

use gateway::test_util::{start_gateway, REST_ON};
use http::StatusCode;

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy_beside_the_api() {
    let gw = start_gateway(REST_ON).await;
    let page = gw.get("/console/").await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers["x-frame-options"].to_str().unwrap(), "DENY");
    let html = String::from_utf8_lossy(&page.body).to_string();
    assert!(html.contains("/console/js/main.js"), "{html}");
    let script = gw.get("/console/js/api.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    // The script talks to the API of the same origin, which answers it.
    let script = String::from_utf8_lossy(&script.body).to_string();
    assert!(script.contains("/api/auth/login"));
    assert_eq!(
        gw.get("/console/nothing.js").await.status,
        StatusCode::NOT_FOUND
    );
    gw.finish().await;

    // Without the REST module there is no console.
    let gw = start_gateway("").await;
    assert_eq!(gw.get("/console/").await.status, StatusCode::NOT_FOUND);
    gw.stop().await;
}
