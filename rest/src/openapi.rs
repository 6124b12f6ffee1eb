//! The OpenAPI 3 document of `/api/`, generated from the handlers' annotations and types and
//! served at `/openapi.json`; a test holds it to the router's routes.

use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::handlers::{admin, auth, games, user};

pub const PATH: &str = "/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(title = "Wallet gateway REST API", description = "Players and the back office. Every answer is `{\"success\": true, \"data\": ...}` or the error envelope."),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout, auth::me,
        auth::totp_setup, auth::totp_enable, auth::totp_disable,
        user::balance, user::transactions, user::rounds, user::limits, user::set_limit,
        user::self_exclude, games::launch, admin::players, admin::player,
    ),
    modifiers(&Bearer),
    tags((name = "auth"), (name = "player"), (name = "admin"))
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
