//! The OpenAPI 3.1 document of the HTTP API, served at `GET /api/v1/openapi.json`.
//!
//! It is generated from the code, so that it does not drift from what the server answers: every
//! handler carries its own `#[utoipa::path(...)]` (method, path, parameters, body, responses, the
//! role it needs), and is registered with `utoipa_axum::routes!`, which adds the route to the
//! router and the operation to the document in the same call. Request and response types derive
//! `utoipa::ToSchema` and are the very structs the handlers parse and serialise; error answers are
//! the shared responses of `error::doc`.
//!
//! - A route: give the handler `#[utoipa::path(...)]` and add `.routes(routes!(handler))` to its
//!   module's `router()` (handlers of the same path go in one `routes!`, one per method).
//! - A module: `.merge(module::router())` in `api::routes()` (or in `server::routes()`).
//!
//! `tests/openapi.rs` checks the document against the official OpenAPI 3.1 schema, resolves every
//! `$ref`, and compares its operations with the list of routes the router answers.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Required};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, doc};

/// The name of the bearer security scheme in the document.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "receptionist",
        description = "An AI phone receptionist for recruiting teams. The recruiter API is under \
            `/api/v1`: every operation there needs `Authorization: Bearer KEY`; admin keys may do \
            everything, viewer keys only read (an operation's security requirement lists the \
            role it needs: `[]` any key, `[\"admin\"]` an admin key). A workspace only ever sees \
            its own rows. Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`. \
            Timestamps are RFC 3339 (UTC); durations and transcript times are milliseconds. \
            The carrier webhooks (`/twilio/...`) are signed with `X-Twilio-Signature` instead.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "receptionists", description = "A receptionist: the phone number it answers and everything it says and asks."),
        (name = "calls", description = "Calls with their transcript, answers, disclosures, latencies and recording."),
        (name = "candidates", description = "The candidate pipeline: one candidate per workspace and phone number, and the recruiter's actions."),
        (name = "interviewers", description = "The next screening step candidates are ingested into."),
        (name = "keys", description = "The workspace's API keys, and the key in use."),
        (name = "analytics", description = "Calls, outcomes and drop-off per receptionist over a window."),
        (name = "webhooks", description = "Event endpoints and the deliveries made to them."),
        (name = "carrier", description = "Twilio's webhooks and media stream, signed with `X-Twilio-Signature`."),
        (name = "meta", description = "Health, readiness, metrics and this document."),
    ),
    components(schemas(ErrorBody)),
    modifiers(&Components),
)]
struct ApiDoc;

/// The bearer scheme and the shared error responses.
struct Components;

impl Modify for Components {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some(
            "An API key: `Authorization: Bearer rk_...`. Admin keys may write; viewer keys read \
             (operations that write answer 403 to them)."
                .into(),
        );
        components.add_security_scheme(BEARER, SecurityScheme::Http(bearer));
        components.responses.extend(doc::components());
    }
}

/// The document's fixed parts (info, tags, security scheme, error responses); the routes add
/// their operations and schemas to it (`server::routes`).
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = super::routes().into_openapi();
    optional_bodies_may_be_absent(&mut document);
    document
}

/// An optional JSON body (`request_body(content = Option<T>)`, for an `OptionalJson<T>`) may be
/// absent, but not `null`: the generator writes its schema as `oneOf: [T, {type: null}]`, which
/// would promise that a `null` body is accepted. Keep `T`; `required` stays unset (false).
fn optional_bodies_may_be_absent(document: &mut utoipa::openapi::OpenApi) {
    let null = serde_json::json!({ "type": "null" });
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let Some(RefOr::T(body)) = &mut operation.request_body else {
                continue;
            };
            if matches!(body.required, Some(Required::True)) {
                continue;
            }
            for content in body.content.values_mut() {
                let RefOr::T(content) = content else { continue };
                let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
                    continue;
                };
                if let [schema, other] = one_of.items.as_slice()
                    && serde_json::to_value(other).ok().as_ref() == Some(&null)
                {
                    content.schema = Some(schema.clone());
                }
            }
        }
    }
}

/// The document as served, built once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    document()
        .to_pretty_json()
        .expect("the OpenAPI document serialises to JSON")
});

/// The OpenAPI 3.1 document of this server (this document).
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}
