//! The one route table of `/api/`: each row names a method, a path template, its handler and
//! who may call it. The router, the back office's role checks and the OpenAPI document's
//! paths all come from it, so a route cannot be served, allowed or described apart.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use http::Method;

use crate::auth::Role::{self, Admin, Manager, Support};
use crate::handlers;
use crate::openapi::{self, Bearer};
use crate::Rest;

/// Who may call a route.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    /// Anyone reaches the handler, which authenticates what it needs itself (login,
    /// registration, a signed webhook, a player's own routes through `Caller`).
    Handler,
    /// Staff with one of these roles, checked before the handler runs; every
    /// `/api/admin/...` route is of this kind.
    Staff(&'static [Role]),
}

/// One row of the table.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    handler: fn() -> MethodRouter<Arc<Rest>>,
}

/// Writes the table and, from the same rows, the OpenAPI document's list of paths.
macro_rules! table {
    ($( $method:ident $path:literal => $module:ident :: $handler:ident, $access:expr; )*) => {
        /// Every route of the module.
        pub const ROUTES: &[Route] = &[$(
            Route {
                method: Method::$method,
                path: $path,
                access: $access,
                handler: || axum::routing::on(MethodFilter::$method, handlers::$module::$handler),
            },
        )*];

        /// The OpenAPI 3 document, its paths from the table's handlers' annotations.
        #[derive(utoipa::OpenApi)]
        #[openapi(
            info(title = "Wallet gateway REST API", description = "Players and the back office. Every answer is `{\"success\": true, \"data\": ...}` or the error envelope."),
            paths($(handlers::$module::$handler),*),
            modifiers(&Bearer),
            tags((name = "auth"), (name = "player"), (name = "admin"), (name = "payments"))
        )]
        pub struct ApiDoc;
    };
}

const ANYONE: Access = Access::Handler;
const STAFF: Access = Access::Staff(&[Admin, Manager, Support]);
const MANAGERS: Access = Access::Staff(&[Admin, Manager]);
const ADMINS: Access = Access::Staff(&[Admin]);

table! {
    POST "/api/auth/register" => auth::register, ANYONE;
    POST "/api/auth/login" => auth::login, ANYONE;
    POST "/api/auth/refresh" => auth::refresh, ANYONE;
    POST "/api/auth/logout" => auth::logout, ANYONE;
    GET "/api/auth/me" => auth::me, ANYONE;
    POST "/api/auth/2fa/setup" => auth::totp_setup, ANYONE;
    POST "/api/auth/2fa/enable" => auth::totp_enable, ANYONE;
    POST "/api/auth/2fa/disable" => auth::totp_disable, ANYONE;
    GET "/api/user/balance" => user::balance, ANYONE;
    GET "/api/user/transactions" => user::transactions, ANYONE;
    GET "/api/user/rounds" => user::rounds, ANYONE;
    GET "/api/user/limits" => user::limits, ANYONE;
    PUT "/api/user/limits" => user::set_limit, ANYONE;
    POST "/api/user/self-exclusion" => user::self_exclude, ANYONE;
    POST "/api/user/withdrawals" => payments::request, ANYONE;
    POST "/api/games/{game_id}/launch" => games::launch, ANYONE;
    POST "/api/payments/webhook/{psp}" => payments::webhook, ANYONE;
    GET "/api/admin/players" => admin::players, STAFF;
    GET "/api/admin/players/{id}" => admin::player, STAFF;
    PUT "/api/admin/players/{id}/status" => admin::set_status, MANAGERS;
    POST "/api/admin/players/{id}/logout" => admin::force_logout, STAFF;
    POST "/api/admin/players/{id}/adjustments" => adjustments::create, MANAGERS;
    GET "/api/admin/adjustments" => adjustments::list, MANAGERS;
    POST "/api/admin/adjustments/{id}/approve" => adjustments::approve, ADMINS;
    GET "/api/admin/audit-log" => admin::audit_log, ADMINS;
    GET "/api/admin/reconciliation" => admin::reconciliation, MANAGERS;
    GET "/api/admin/transactions" => admin::transactions, STAFF;
    GET "/api/admin/transactions/{id}/trace" => trace::trace, STAFF;
    POST "/api/admin/transactions/{id}/replay" => trace::replay, MANAGERS;
    GET "/api/admin/reports/{report}" => admin::report, MANAGERS;
    GET "/api/admin/live" => live::live, STAFF;
    GET "/api/admin/providers" => providers::list, STAFF;
    POST "/api/admin/providers" => providers::create, ADMINS;
    PUT "/api/admin/providers/{code}" => providers::update, ADMINS;
    POST "/api/admin/providers/{code}/rotate-secret" => providers::rotate, ADMINS;
    GET "/api/admin/provider-changes" => provider_changes::list, ADMINS;
    POST "/api/admin/provider-changes/{id}/approve" => provider_changes::approve, ADMINS;
    GET "/api/admin/withdrawals" => payments::list, MANAGERS;
    POST "/api/admin/withdrawals/{id}/approve" => payments::approve, MANAGERS;
    POST "/api/admin/withdrawals/{id}/reject" => payments::reject, MANAGERS;
}

/// The roles allowed on `method path` (a route template), if it is a staff route at all.
pub fn allowed_roles(method: &Method, path: &str) -> Option<&'static [Role]> {
    ROUTES
        .iter()
        .find(|r| r.method == method && r.path == path)
        .and_then(|r| match r.access {
            Access::Staff(roles) => Some(roles),
            Access::Handler => None,
        })
}

/// Counts every routed request by method, route template and status, and times it
/// (`wallet_rest_requests_total`, `wallet_rest_request_duration_seconds`): labels come from
/// the route table, never from the request, so their number stays bounded.
async fn observe(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = request.method().as_str().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_str().to_string();
    metrics::counter!("wallet_rest_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("wallet_rest_request_duration_seconds", "route" => route)
        .record(started.elapsed());
    response
}

/// The router of every row: staff routes behind the role check, the rest straight to their
/// handlers, all counted and timed, bodies bounded.
pub fn router(rest: Arc<Rest>) -> Router {
    let mut open = Router::new();
    let mut staff = Router::new();
    for route in ROUTES {
        match route.access {
            Access::Handler => open = open.route(route.path, (route.handler)()),
            Access::Staff(_) => staff = staff.route(route.path, (route.handler)()),
        }
    }
    let staff = staff.route_layer(axum::middleware::from_fn_with_state(
        rest.clone(),
        crate::auth::enforce_rbac,
    ));
    let body_max = rest.options.body_bytes_max;
    open.merge(staff)
        .route(openapi::PATH, axum::routing::get(openapi::serve))
        .route_layer(axum::middleware::from_fn(observe))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_max))
        .with_state(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staff_routes_are_exactly_the_admin_paths_and_none_is_listed_twice() {
        let mut seen = std::collections::BTreeSet::new();
        for route in ROUTES {
            let staff = matches!(route.access, Access::Staff(_));
            assert_eq!(
                staff,
                route.path.starts_with("/api/admin/"),
                "{}",
                route.path
            );
            assert!(
                seen.insert((route.method.as_str(), route.path)),
                "{} twice",
                route.path
            );
        }
        assert_eq!(
            allowed_roles(&Method::GET, "/api/admin/audit-log"),
            Some(&[Admin][..])
        );
        assert_eq!(allowed_roles(&Method::GET, "/api/user/balance"), None);
        assert_eq!(allowed_roles(&Method::DELETE, "/api/admin/players"), None);
    }
}
