//! The OpenAPI 3.1 document of warren's HTTP API, from the handlers'
//! annotations: each function crate describes its own routes
//! (`<crate>::openapi()`), and this merges them with what the gateway adds
//! (the credentials warren accepts, the list pages' cursor headers). The
//! result is committed as docs/openapi.json, which the `ops` function
//! serves as `GET /openapi.json`; a test below keeps the two equal.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, Header, InfoBuilder, LicenseBuilder, OpenApi, RefOr, SecurityRequirement,
};
use utoipa::{PartialSchema, ToSchema};
use warren::http::openapi::ErrorBody;

/// Where the document is committed, from the workspace root.
pub const COMMITTED: &str = "docs/openapi.json";

/// The command that writes [`COMMITTED`] anew.
pub const REGENERATE: &str =
    "cargo run -q -p warren-cli --bin warren -- openapi > docs/openapi.json";

/// The families of routes, as the document tags them.
const TAGS: [(&str, &str); 6] = [
    (
        "tasks",
        "The task queue (lapinq-compatible): enqueue, read, control",
    ),
    (
        "pipelines",
        "Pipelines, their runs (executions), triggers, webhooks and usage",
    ),
    ("events", "Ingested events, event triggers and topics"),
    (
        "identity",
        "Signing in and out, the caller, its API keys and stored secrets",
    ),
    ("admin", "Users and what they may do (admins only)"),
    ("ops", "Health, metrics and this document (public)"),
];

/// The whole document.
pub fn document() -> OpenApi {
    let mut doc = OpenApi::new(
        InfoBuilder::new()
            .title("warren")
            .version(env!("CARGO_PKG_VERSION"))
            .description(Some(
                "warren's HTTP API: a task queue and event-pipeline engine. Routes need \
                 credentials (any one of the security schemes) unless they say otherwise; \
                 `warren dev --open` serves loopback clients without any.",
            ))
            .license(Some(
                LicenseBuilder::new()
                    .name("Apache-2.0")
                    .identifier(Some("Apache-2.0"))
                    .build(),
            ))
            .build(),
        utoipa::openapi::Paths::new(),
    );
    for part in [
        enqueue::openapi(),
        enqueue_batch::openapi(),
        task_query::openapi(),
        task_control::openapi(),
        pipelines::openapi(),
        events::openapi(),
        identity::openapi(),
        ops::openapi(),
    ] {
        doc.merge(part);
    }
    let components = doc.components.take().unwrap_or_default();
    let mut components = ComponentsBuilder::from(components)
        .security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key (`POST /api/v1/keys`) or the deployment's bootstrap key",
            ))),
        )
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key, or a JWT from the configured OIDC issuer"))
                    .build(),
            ),
        )
        .security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                warren::http::auth::SESSION_COOKIE,
                "The session cookie `POST /login` sets; changes must come from warren's own pages",
            ))),
        )
        .build();
    // The error answers' schema (with those it names), which utoipa does
    // not collect from `IntoResponses` types.
    let mut schemas = vec![(ErrorBody::name().into_owned(), ErrorBody::schema())];
    ErrorBody::schemas(&mut schemas);
    for (name, schema) in schemas {
        components.schemas.entry(name).or_insert(schema);
    }
    doc.components = Some(components);
    doc.security = Some(
        ["api_key", "bearer", "session"]
            .map(|name| SecurityRequirement::new(name, Vec::<String>::new()))
            .into(),
    );
    doc.tags = Some(
        TAGS.iter()
            .map(|(name, about)| {
                TagBuilder::new()
                    .name(*name)
                    .description(Some(*about))
                    .build()
            })
            .collect(),
    );
    for item in doc.paths.paths.values_mut() {
        if let Some(get) = item.get.as_mut() {
            add_page_headers(get);
        }
    }
    share_error_answers(&mut doc);
    doc
}

/// Where the ids a route hands out are used next, as OpenAPI links: a
/// client (or a stateful test) follows them from a created thing to
/// what can be done with it. `(operation, status, link target,
/// parameter, where the value is in the answer)`.
const LINKS: &[(&str, &str, &[&str], &str, &str)] = &[
    (
        "enqueue_task",
        "201",
        &[
            "get_task",
            "get_task_result",
            "report_task_progress",
            "cancel_task",
            "requeue_task",
        ],
        "id",
        "$response.body#/task_id",
    ),
    (
        "enqueue_tasks",
        "201",
        &["get_task", "cancel_task"],
        "id",
        "$response.body#/task_ids/0",
    ),
    (
        "create_pipeline",
        "201",
        &[
            "get_pipeline",
            "update_pipeline",
            "delete_pipeline",
            "get_pipeline_stats",
            "run_pipeline",
            "list_executions",
            "list_triggers",
            "create_trigger",
        ],
        "id",
        "$response.body#/id",
    ),
    (
        "create_pipeline",
        "201",
        &[
            "start_event_trigger",
            "get_event_trigger",
            "stop_event_trigger",
        ],
        "pipeline_id",
        "$response.body#/id",
    ),
    (
        "create_pipeline",
        "201",
        &["ingest_event"],
        "workflow",
        "$response.body#/id",
    ),
    (
        "run_pipeline",
        "202",
        &["get_execution"],
        "id",
        "$response.body#/execution_id",
    ),
    (
        "create_trigger",
        "201",
        &["delete_trigger"],
        "id",
        "$response.body#/id",
    ),
    (
        "create_trigger",
        "201",
        &["call_webhook"],
        "token",
        "$response.body#/webhook_token",
    ),
    (
        "ingest_event",
        "202",
        &["get_event"],
        "id",
        "$response.body#/event_id",
    ),
    (
        "ingest_event",
        "202",
        &["get_execution"],
        "id",
        "$response.body#/task_id",
    ),
    (
        "create_user",
        "201",
        &[
            "delete_user",
            "set_user_role",
            "set_user_permissions",
            "set_user_limits",
        ],
        "id",
        "$response.body#/id",
    ),
    (
        "create_key",
        "201",
        &["delete_key"],
        "id",
        "$response.body#/id",
    ),
    (
        "put_secret",
        "201",
        &["delete_secret"],
        "name",
        "$response.body#/name",
    ),
    (
        "publish_message",
        "202",
        &["get_topic"],
        "topic",
        "$response.body#/topic",
    ),
];

/// Adds [`LINKS`] to the document's JSON: utoipa 5.5's `Link` writes its
/// fields in snake case (`operation_id`), which no OpenAPI tool reads.
fn add_links(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (from, status, targets, parameter, value) in LINKS {
        let answer = paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|item| item.values_mut())
            .find(|op| op["operationId"] == *from)
            .and_then(|op| op.pointer_mut(&format!("/responses/{status}")))
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("a link from `{from}` {status}, which is not documented"));
        let links = answer.entry("links").or_insert_with(|| json!({}));
        for target in *targets {
            links[*target] = json!({ "operationId": target, "parameters": { *parameter: value } });
        }
    }
}

/// Every operation of the document.
fn operations(doc: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
    })
}

/// The error answers many routes share, each written once under
/// `components/responses` and referenced from the routes that give it.
fn share_error_answers(doc: &mut OpenApi) {
    use utoipa::IntoResponses;
    use warren::http::openapi::*;
    let names = [
        ("400", "BadRequest"),
        ("401", "Unauthorized"),
        ("403", "Forbidden"),
        ("404", "NotFound"),
        ("409", "Conflict"),
        ("413", "TooLarge"),
        ("422", "Unprocessable"),
        ("429", "RateLimited"),
        ("500", "Internal"),
        ("503", "Unavailable"),
    ];
    let mut shared = BadRequest::responses();
    for more in [
        NotFound::responses(),
        Conflict::responses(),
        TooLarge::responses(),
        Unprocessable::responses(),
        Refused::responses(),
        Faults::responses(),
    ] {
        shared.extend(more);
    }
    let components = doc.components.get_or_insert_with(Default::default);
    for (status, name) in names {
        if let Some(answer) = shared.get(status) {
            components.responses.insert(name.into(), answer.clone());
        }
    }
    for op in operations(doc) {
        for (status, answer) in op.responses.responses.iter_mut() {
            let name = names.iter().find(|(s, _)| s == status).map(|(_, n)| *n);
            if let Some(name) = name
                && shared.get(status) == Some(answer)
            {
                *answer = RefOr::Ref(utoipa::openapi::Ref::from_response_name(name));
            }
        }
    }
}

/// A list answered by `page_response` (a GET taking `cursor`) says where
/// its next page is in two headers.
fn add_page_headers(op: &mut Operation) {
    let paged = op.parameters.iter().flatten().any(|p| p.name == "cursor");
    let Some(RefOr::T(ok)) = op.responses.responses.get_mut("200") else {
        return;
    };
    if !paged {
        return;
    }
    let header = |about: &str| {
        let mut h = Header::new(String::schema());
        h.description = Some(about.into());
        h
    };
    ok.headers.insert(
        "X-Next-Cursor".into(),
        header("The cursor of the next page, when there is one"),
    );
    ok.headers.insert(
        "Link".into(),
        header("`<path?query&cursor=...>; rel=\"next\"`, when there is a next page"),
    );
}

/// A struct that flattens a `deny_unknown_fields` one (`Pipeline` holds a
/// `PipelineSpec`) comes out as `allOf` with a schema that refuses every
/// property but its own, which no instance of the outer struct can meet:
/// such an `allOf` becomes the one object it means, with every property.
fn open_flattened_closed_schemas(doc: &mut serde_json::Value) {
    use serde_json::{Map, Value};
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let known = schemas.clone();
    let resolve = |part: &Value| -> Option<Value> {
        match part.get("$ref").and_then(Value::as_str) {
            Some(r) => known.get(r.strip_prefix("#/components/schemas/")?).cloned(),
            None => Some(part.clone()),
        }
    };
    for schema in schemas.values_mut() {
        let Some(parts) = schema.get("allOf").and_then(Value::as_array) else {
            continue;
        };
        let Some(parts) = parts.iter().map(resolve).collect::<Option<Vec<_>>>() else {
            continue;
        };
        let closed = parts
            .iter()
            .any(|p| p.get("additionalProperties") == Some(&Value::Bool(false)));
        if !closed || parts.iter().any(|p| p.get("properties").is_none()) {
            continue;
        }
        let (mut properties, mut required) = (Map::new(), Vec::<Value>::new());
        for part in &parts {
            properties.extend(part["properties"].as_object().cloned().unwrap_or_default());
            required.extend(part["required"].as_array().cloned().unwrap_or_default());
        }
        let mut merged = Map::new();
        merged.insert("type".into(), "object".into());
        merged.insert("properties".into(), Value::Object(properties));
        merged.insert("required".into(), Value::Array(required));
        if let Some(about) = schema.get("description") {
            merged.insert("description".into(), about.clone());
        }
        *schema = Value::Object(merged);
    }
}

/// The document as committed: pretty JSON, keys in a stable order, a
/// final newline.
pub fn json() -> String {
    let mut value = serde_json::to_value(document()).expect("the document is JSON");
    open_flattened_closed_schemas(&mut value);
    add_links(&mut value);
    let mut text = serde_json::to_string_pretty(&value).expect("the document is JSON");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use super::*;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let path = root().join(COMMITTED);
        let fresh = json();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &fresh).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == fresh,
            "{COMMITTED} is not what the handlers' annotations generate; regenerate it with\n    {REGENERATE}\n(or UPDATE_OPENAPI=1 cargo test -p warren-cli openapi) and commit it"
        );
        assert_eq!(
            ops::OPENAPI_JSON,
            committed,
            "`ops` serves the committed file"
        );
    }

    /// `(METHOD, path)` of every `.route(...)` in a router's source (its
    /// tests left out).
    fn routes_in(source: &str) -> BTreeSet<(String, String)> {
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        let mut found = BTreeSet::new();
        for (at, _) in code.match_indices(".route(") {
            let rest = &code[at + ".route(".len()..];
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let args = &rest[..end];
            let path = args.split('"').nth(1).expect("a route's path is a literal");
            for method in ["get", "post", "put", "patch", "delete"] {
                let called = args
                    .match_indices(&format!("{method}("))
                    .any(|(i, _)| !args[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
                if called {
                    found.insert((method.to_uppercase(), path.to_string()));
                }
            }
        }
        found
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_is_served() {
        let mut served = BTreeSet::new();
        for entry in std::fs::read_dir(root().join("functions")).unwrap() {
            let dir = entry.unwrap().path();
            if dir.ends_with("dashboard") {
                // Pages for browsers, not API: their data comes from the
                // documented routes (and the snapshot the page itself reads).
                continue;
            }
            let lib = dir.join("src/lib.rs");
            served.extend(routes_in(&std::fs::read_to_string(lib).unwrap()));
        }
        let doc = document();
        let mut documented = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
                ("DELETE", &item.delete),
            ] {
                if op.is_some() {
                    documented.insert((method.to_string(), path.clone()));
                }
            }
        }
        assert!(
            served.len() > 40,
            "the route scan found too few: {served:?}"
        );
        assert_eq!(
            served.difference(&documented).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "routes without #[utoipa::path] (or missing from their crate's openapi())"
        );
        assert_eq!(
            documented.difference(&served).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "documented routes that no router serves"
        );
    }

    #[test]
    fn links_lead_to_operations_that_exist() {
        let mut doc = document();
        let ids: BTreeSet<String> = operations(&mut doc)
            .filter_map(|op| op.operation_id.clone())
            .collect();
        for target in LINKS.iter().flat_map(|link| link.2.iter()) {
            assert!(
                ids.contains(*target),
                "a link to `{target}`, which no operation is"
            );
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = document();
        let mut seen = BTreeSet::new();
        for item in doc.paths.paths.values() {
            for op in [&item.get, &item.post, &item.put, &item.patch, &item.delete]
                .into_iter()
                .flatten()
            {
                let id = op.operation_id.clone().unwrap_or_default();
                assert!(seen.insert(id.clone()), "operationId `{id}` twice");
            }
        }
    }
}
