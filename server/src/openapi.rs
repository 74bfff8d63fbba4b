//! The OpenAPI document, generated from the routes' annotations. The checked-in
//! copy is `openapi/openapi.json`; a test fails when the two differ.

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kubeportal",
        description = "Kubernetes backend for developer portals: a cluster registry, entity-scoped object queries and a policy-gated Kubernetes API proxy. Errors use Backstage's envelope `{error:{name,message},request:{method,url},response:{statusCode}}`.",
        license(name = "Apache-2.0"),
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "clusters", description = "The cluster registry"),
        (name = "proxy", description = "The Kubernetes API proxy"),
        (name = "objects", description = "Entity-scoped object queries across clusters"),
        (name = "permissions", description = "The permission policy"),
        (name = "operations", description = "Health and readiness"),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or static token")
                    .description(Some("A portal token: a JWT (e.g. a Backstage user token) or a static token from the configuration. Without one, only the guest is possible, where enabled."))
                    .build(),
            ),
        );
    }
}

/// Every documented route, with its document.
pub fn api() -> (Router<AppState>, Document) {
    let (router, mut document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::clusters::routes::routes())
        .merge(crate::proxy::documented_routes())
        .merge(crate::objects::routes())
        .merge(crate::permissions::routes::routes())
        .merge(crate::audit::routes::routes())
        .merge(crate::health::routes())
        .split_for_parts();
    document.merge(crate::proxy::ProxyDocs::openapi());
    let router = router.merge(crate::proxy::routes());
    (router, document)
}

/// The document as `kubeportal openapi` prints it and `openapi/openapi.json` holds it.
pub fn document_json() -> String {
    let (_, document) = api();
    let mut text = document
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    text.push('\n');
    text
}
