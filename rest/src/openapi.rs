//! The OpenAPI 3 document of `/api/`, generated from the handlers' annotations and types and
//! served at `/openapi.json`; a test holds it to the router's routes.

use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::handlers::{
    adjustments, admin, auth, games, payments, provider_changes, providers, trace, user,
};

pub const PATH: &str = "/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(title = "Wallet gateway REST API", description = "Players and the back office. Every answer is `{\"success\": true, \"data\": ...}` or the error envelope."),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout, auth::me,
        auth::totp_setup, auth::totp_enable, auth::totp_disable,
        user::balance, user::transactions, user::rounds, user::limits, user::set_limit,
        user::self_exclude, games::launch, admin::players, admin::player,
        admin::set_status, admin::force_logout, admin::audit_log, adjustments::create,
        adjustments::approve, admin::reconciliation, payments::webhook, payments::request,
        payments::approve, payments::reject, admin::transactions, admin::report,
        providers::list, providers::create, providers::update, providers::rotate,
        provider_changes::list, provider_changes::approve,
        trace::trace, trace::replay,
    ),
    modifiers(&Bearer),
    tags((name = "auth"), (name = "player"), (name = "admin"), (name = "payments"))
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub async fn serve() -> Response {
    axum::Json(ApiDoc::openapi()).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::auth::password::Hasher;
    use crate::auth::token::Keys;
    use crate::auth::{Limiters, RateLimits};
    use crate::{Options, Rest};

    /// A module whose pool never connects: enough to build the router.
    fn rest() -> Arc<Rest> {
        let pg: tokio_postgres::Config = "host=/nonexistent dbname=none".parse().unwrap();
        let manager = deadpool_postgres::Manager::new(pg, tokio_postgres::NoTls);
        let pool = deadpool_postgres::Pool::builder(manager).build().unwrap();
        let options = Options {
            jwt_key: vec![7; 32],
            access_ttl: Duration::from_secs(60),
            refresh_ttl: Duration::from_secs(60),
            hash_slots: 1,
            rate_limits: RateLimits::default(),
            game_session_ttl: Duration::from_secs(60),
            currency: "EUR".into(),
            adjustment_approval_above: 1000,
            adjustment_approval_above_in: Default::default(),
            providers: Vec::new(),
            payment_providers: Vec::new(),
            providers_changed: Arc::new(tokio::sync::Notify::new()),
            managed_dialects: vec!["native".into()],
            allowlist_required: Vec::new(),
            signature_window_s_max: 3600,
            verify_signature: |_, _, _, _, _| false,
            report_fold_interval: Duration::from_secs(60),
            report_settle_after: Duration::from_secs(60),
            body_bytes_max: 1024,
            request_timeout: Duration::from_secs(1),
        };
        Arc::new(Rest {
            pool,
            keys: Keys::new(&options.jwt_key, options.access_ttl),
            hasher: Hasher::new(1),
            limiters: Limiters::new(options.rate_limits),
            options,
            desk: std::sync::OnceLock::new(),
        })
    }

    #[tokio::test]
    async fn every_route_is_described_and_nothing_else() {
        let routes = crate::routes(rest());
        let served: BTreeSet<(String, String)> = routes
            .listed
            .iter()
            .map(|(m, p)| (m.as_str().to_lowercase(), p.to_string()))
            .collect();
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut described = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                described.insert((method.clone(), path.clone()));
            }
        }
        assert_eq!(served, described);
        assert_eq!(served.len(), routes.listed.len(), "no route added twice");
    }

    #[tokio::test]
    async fn every_admin_route_has_a_row_in_the_role_table_and_back() {
        let routes = crate::routes(rest());
        let admin: BTreeSet<(String, String)> = routes
            .listed
            .iter()
            .filter(|(_, p)| p.starts_with("/api/admin/"))
            .map(|(m, p)| (m.as_str().to_string(), p.to_string()))
            .collect();
        let table: BTreeSet<(String, String)> = crate::auth::ADMIN_ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(admin, table);
    }
}
