//! What the services' OpenAPI documents share beyond the error body
//! ([`crate::error::error_schema`]), the 401 ([`crate::auth::Unauthorized`])
//! and the probes ([`crate::ops::document`]): the `Retry-After` header, and
//! the JSON text a document is served as.

use axum::extract::State;
use axum::http::header;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::OpenApi;

/// The `Retry-After` header of a 429 or 503: whole seconds, at least one.
pub fn retry_after_header() -> Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1)),
        )
        .description(Some("Seconds to wait before retrying"))
        .build()
}

/// `doc` as the pretty JSON served at `/openapi.json`, in the order the code
/// declares it. Operations lose the tags utoipa derives from the handlers'
/// module paths, which mean nothing to a client. Every response header is
/// marked `required`: each header the documents name is sent with every
/// answer of its status, and utoipa's `Header` has no `required` field.
pub fn to_json(mut doc: OpenApi) -> String {
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            operation.tags = None;
        }
    }
    let text = doc.to_json().expect("an OpenAPI document serializes");
    let mut tree: Tree = serde_json::from_str(&text).expect("serde_json reads what it wrote");
    tree.require_headers();
    serde_json::to_string_pretty(&tree).expect("a JSON tree serializes")
}

/// JSON whose objects keep their keys' order (`serde_json::Value` sorts
/// them unless its `preserve_order` feature is on, which would change every
/// crate's maps).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Tree {
    Object(IndexMap<String, Tree>),
    Array(Vec<Tree>),
    Leaf(Value),
}

impl Tree {
    fn require_headers(&mut self) {
        match self {
            Self::Object(fields) => {
                for (key, value) in fields.iter_mut() {
                    if let (true, Self::Object(headers)) = (key == "headers", &mut *value) {
                        for header in headers.values_mut() {
                            if let Self::Object(header) = header {
                                header.insert("required".into(), Self::Leaf(Value::Bool(true)));
                            }
                        }
                    }
                    value.require_headers();
                }
            }
            Self::Array(items) => items.iter_mut().for_each(Self::require_headers),
            Self::Leaf(_) => {}
        }
    }
}

/// `GET /openapi.json`: a service's document, as the JSON [`to_json`] made.
/// Listed with the probes in [`crate::ops::document`].
#[utoipa::path(
    get,
    path = "/openapi.json",
    summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1", body = Object, content_type = "application/json")),
)]
pub async fn serve_document(
    State(document): State<&'static str>,
) -> ([(header::HeaderName, &'static str); 1], &'static str) {
    ([(header::CONTENT_TYPE, "application/json")], document)
}

/// What a service's test asserts of its document: OpenAPI 3, exactly the
/// `operations` (path, method) expected, and no `$ref` naming nothing.
pub fn check_document(json: &str, operations: &[(&str, &str)]) -> anyhow::Result<()> {
    let doc: Value = serde_json::from_str(json)?;
    let version = doc["openapi"].as_str().unwrap_or_default();
    anyhow::ensure!(version.starts_with("3."), "OpenAPI {version:?}, not 3.x");
    let mut found: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            found.push((path.clone(), method.clone()));
        }
    }
    found.sort_unstable();
    let mut expected: Vec<(String, String)> = operations
        .iter()
        .map(|(p, m)| ((*p).to_owned(), (*m).to_owned()))
        .collect();
    expected.sort_unstable();
    anyhow::ensure!(
        found == expected,
        "operations {found:?}, expected {expected:?}"
    );
    let unresolved = unresolved_refs(json);
    anyhow::ensure!(unresolved.is_empty(), "unresolved $refs: {unresolved:?}");
    Ok(())
}

/// The `$ref`s of a served document that name nothing in it.
pub fn unresolved_refs(json: &str) -> Vec<String> {
    fn walk(value: &Value, root: &Value, unresolved: &mut Vec<String>) {
        match value {
            Value::Object(fields) => {
                if let Some(Value::String(target)) = fields.get("$ref") {
                    let found = target
                        .strip_prefix('#')
                        .and_then(|pointer| root.pointer(pointer));
                    if found.is_none() {
                        unresolved.push(target.clone());
                    }
                }
                fields.values().for_each(|v| walk(v, root, unresolved));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, root, unresolved)),
            _ => {}
        }
    }
    let root: Value = serde_json::from_str(json).expect("a served document is JSON");
    let mut unresolved = Vec::new();
    walk(&root, &root, &mut unresolved);
    unresolved
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::{OpenApiBuilder, PathItem, PathsBuilder, ResponseBuilder};

    #[test]
    fn keeps_the_order_and_requires_every_header() {
        let operation = utoipa::openapi::path::OperationBuilder::new().response(
            "503",
            ResponseBuilder::new()
                .description("later")
                .header("Retry-After", retry_after_header()),
        );
        let doc = OpenApiBuilder::new()
            .paths(PathsBuilder::new().path(
                "/",
                PathItem::new(utoipa::openapi::HttpMethod::Get, operation),
            ))
            .build();
        let json = to_json(doc);
        assert!(json.find("\"openapi\"") < json.find("\"info\""), "{json}");
        let value: Value = serde_json::from_str(&json).unwrap();
        let header = &value["paths"]["/"]["get"]["responses"]["503"]["headers"]["Retry-After"];
        assert_eq!(header["required"], true, "{json}");
        assert_eq!(header["schema"]["minimum"], 1, "{json}");
        assert!(unresolved_refs(&json).is_empty());
        assert_eq!(
            unresolved_refs(r##"{"a": {"$ref": "#/b"}, "c": [{"$ref": "#/a"}]}"##),
            ["#/b"]
        );
    }
}
