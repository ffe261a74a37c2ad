//! Pipelines (workflows, flows): a versioned, ordered list of steps that an
//! execution runs against an input event. Definitions are checked whole
//! when they are written (schemas compile, expressions parse, names are
//! unique), so a stored pipeline never fails for being malformed.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::expression::Expression;

/// The most steps one pipeline may have.
pub const MAX_STEPS: usize = 50;
/// The most attempts of one step (1 + retries).
pub const MAX_STEP_RETRIES: u32 = 10;
/// The longest one step may run.
pub const MAX_STEP_TIMEOUT_SECONDS: u64 = 900;
/// Timeout of a step that names none.
pub const DEFAULT_STEP_TIMEOUT_SECONDS: u64 = 30;

/// What a pipeline is: everything a client writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema the input event must satisfy: checked by the `validate`
    /// steps that name no schema of their own, or else before the first step.
    #[serde(default)]
    pub event_schema: Option<Value>,
    #[serde(default)]
    pub options: PipelineOptions,
    pub steps: Vec<Step>,
}

/// Options of a pipeline beyond its steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineOptions {
    /// The topic whose messages start this pipeline once its event trigger
    /// is started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// One step: a name, what it does, and how hard to try.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Step {
    pub name: String,
    #[serde(flatten)]
    pub kind: StepKind,
    /// Further attempts after a failed one.
    #[serde(default)]
    pub retries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// What a step does. Every step sees the context `{"event": <input>,
/// "steps": {<name>: <output>, ...}}` of the steps before it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepKind {
    /// Check the event against `schema` (default: the pipeline's `event_schema`).
    Validate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<Value>,
    },
    /// Run a registered task handler in-line; `kwargs.context` holds the
    /// context unless the step sets it.
    Task {
        task_name: String,
        #[serde(default)]
        args: Vec<Value>,
        #[serde(default)]
        kwargs: Map<String, Value>,
    },
    /// Send the context as JSON to `url` (signed, private addresses refused);
    /// a non-2xx answer fails the step.
    Http {
        url: String,
        #[serde(default = "default_method")]
        method: String,
        #[serde(default)]
        headers: Map<String, Value>,
    },
    /// Reshape the context with a JMESPath expression; its result is the output.
    Transform { expression: String },
    /// Enqueue tasks: one per element of `items` (a JMESPath expression over
    /// the context that yields an array; each element becomes the task's
    /// `kwargs.item`), or a single task with `kwargs.context`.
    Enqueue {
        task_name: String,
        #[serde(default = "default_queue")]
        queue_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        items: Option<String>,
    },
}

fn default_method() -> String {
    "POST".into()
}

fn default_queue() -> String {
    "default".into()
}

impl StepKind {
    /// The kind's name, as `kind` in a definition.
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Validate { .. } => "validate",
            StepKind::Task { .. } => "task",
            StepKind::Http { .. } => "http",
            StepKind::Transform { .. } => "transform",
            StepKind::Enqueue { .. } => "enqueue",
        }
    }

    /// Whether the step acts only on the execution (a transform, a schema
    /// check): running it again changes nothing outside, so its checkpoint
    /// may wait for the next step's.
    pub fn is_pure(&self) -> bool {
        matches!(self, StepKind::Transform { .. } | StepKind::Validate { .. })
    }
}

impl Step {
    /// How long one attempt of the step may run.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_seconds.unwrap_or(DEFAULT_STEP_TIMEOUT_SECONDS))
    }
}

/// Why a pipeline definition is refused: which field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

impl PipelineSpec {
    /// Check the whole definition; the first problem found.
    pub fn check(&self) -> Result<(), SpecError> {
        let name = self.name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(refuse("name", "must be 1 to 100 characters"));
        }
        if self.description.as_ref().is_some_and(|d| d.len() > 500) {
            return Err(refuse("description", "at most 500 characters"));
        }
        if let Some(schema) = &self.event_schema {
            check_schema(schema).map_err(|m| refuse("event_schema", m))?;
        }
        if let Some(topic) = &self.options.event {
            check_topic(topic).map_err(|m| refuse("options.event", m))?;
        }
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return Err(refuse("steps", format!("1 to {MAX_STEPS} steps")));
        }
        let mut names = HashSet::new();
        for (i, step) in self.steps.iter().enumerate() {
            let at = |field: &str| format!("steps[{i}].{field}");
            let n = step.name.trim();
            if n.is_empty() || n.len() > 100 {
                return Err(refuse(at("name"), "must be 1 to 100 characters"));
            }
            if !names.insert(n) {
                return Err(refuse(at("name"), format!("`{n}` names two steps")));
            }
            if step.retries > MAX_STEP_RETRIES {
                return Err(refuse(at("retries"), format!("at most {MAX_STEP_RETRIES}")));
            }
            if step
                .timeout_seconds
                .is_some_and(|t| t == 0 || t > MAX_STEP_TIMEOUT_SECONDS)
            {
                return Err(refuse(
                    at("timeout_seconds"),
                    format!("1 to {MAX_STEP_TIMEOUT_SECONDS}"),
                ));
            }
            step.kind
                .check(self)
                .map_err(|(field, m)| refuse(at(field), m))?;
        }
        Ok(())
    }
}

impl StepKind {
    fn check(&self, pipeline: &PipelineSpec) -> Result<(), (&'static str, String)> {
        match self {
            StepKind::Validate { schema } => match (schema, &pipeline.event_schema) {
                (Some(s), _) => check_schema(s).map_err(|m| ("schema", m)),
                (None, Some(_)) => Ok(()),
                (None, None) => Err((
                    "schema",
                    "a validate step needs a schema, or the pipeline's event_schema".into(),
                )),
            },
            StepKind::Task { task_name, .. } | StepKind::Enqueue { task_name, .. }
                if task_name.trim().is_empty() =>
            {
                Err(("task_name", "must not be empty".into()))
            }
            StepKind::Task { .. } => Ok(()),
            StepKind::Http {
                url,
                method,
                headers,
            } => {
                let parsed = reqwest::Url::parse(url).map_err(|e| ("url", e.to_string()))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(("url", "must be an http or https URL".into()));
                }
                if !matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
                    return Err(("method", "one of GET, POST, PUT, PATCH, DELETE".into()));
                }
                match headers.values().all(Value::is_string) {
                    true => Ok(()),
                    false => Err(("headers", "header values must be strings".into())),
                }
            }
            StepKind::Transform { expression } => {
                check_expression(expression).map_err(|m| ("expression", m))
            }
            StepKind::Enqueue {
                queue_name, items, ..
            } => {
                if !super::task::valid_queue_name(queue_name) {
                    return Err((
                        "queue_name",
                        "1 to 100 letters, digits, `_`, `-`, `.` or `:`".into(),
                    ));
                }
                match items {
                    Some(e) => check_expression(e).map_err(|m| ("items", m)),
                    None => Ok(()),
                }
            }
        }
    }
}

/// A JSON Schema that is valid against its meta-schema and compiles (no
/// remote references: they are never fetched).
pub fn check_schema(schema: &Value) -> Result<(), String> {
    jsonschema::meta::validate(schema).map_err(|e| format!("not a valid JSON Schema: {e}"))?;
    compile_schema(schema).map(|_| ())
}

/// Largest compiled `pattern` (the regex crate's own default is 10 MiB).
const MAX_PATTERN_BYTES: usize = 1 << 20;

/// A schema's validator. Patterns use the `regex` engine, whose matching is
/// linear in the input: a `pattern` with nested quantifiers cannot make one
/// event cost seconds (lookaround and backreferences are refused instead).
pub fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    let patterns = jsonschema::PatternOptions::regex()
        .size_limit(MAX_PATTERN_BYTES)
        .dfa_size_limit(MAX_PATTERN_BYTES);
    jsonschema::options()
        .with_pattern_options(patterns)
        .build(schema)
        .map_err(|e| format!("not a usable JSON Schema: {e}"))
}

/// A topic name: what SNS and SQS names allow.
pub fn check_topic(topic: &str) -> Result<(), String> {
    // SNS topic names, so an SNS topic can feed the ingress queue under the
    // same name: 1-256 characters, the FIFO suffix included.
    let stem = topic.strip_suffix(".fifo").unwrap_or(topic);
    let ok = !stem.is_empty()
        && topic.len() <= 256
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match ok {
        true => Ok(()),
        false => Err("1 to 256 letters, digits, `-` or `_`, optionally ending in `.fifo`".into()),
    }
}

fn check_expression(expression: &str) -> Result<(), String> {
    Expression::compile(expression)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// One error of an input against a schema: where, and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SchemaViolation {
    /// JSON Pointer into the input (`""` is the whole input).
    pub path: String,
    pub message: String,
}

/// Every way `instance` breaks `schema` (empty when it is valid). The
/// schema was checked when the pipeline was written.
pub fn violations(schema: &Value, instance: &Value) -> Vec<SchemaViolation> {
    match compile_schema(schema) {
        Ok(v) => violations_of(&v, instance),
        Err(message) => vec![SchemaViolation {
            path: String::new(),
            message,
        }],
    }
}

/// The first 50 ways `instance` breaks a compiled schema.
pub fn violations_of(validator: &jsonschema::Validator, instance: &Value) -> Vec<SchemaViolation> {
    validator
        .iter_errors(instance)
        .take(50)
        .map(|e| SchemaViolation {
            path: e.instance_path().to_string(),
            message: e.to_string(),
        })
        .collect()
}

/// One stored version of a pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Pipeline {
    pub id: Uuid,
    /// From 1; every update writes the next one and keeps the old ones.
    pub version: u32,
    #[serde(flatten)]
    pub spec: PipelineSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The user who made it (`None`: the deployment); its triggers,
    /// executions and events are that user's too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(steps: Value) -> Result<PipelineSpec, String> {
        serde_json::from_value(json!({
            "name": "orders",
            "event_schema": {"type": "object", "required": ["id"]},
            "steps": steps
        }))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn every_step_kind_parses_and_checks() {
        let s = spec(json!([
            {"name": "v", "kind": "validate"},
            {"name": "t", "kind": "task", "task_name": "echo", "args": [1], "retries": 2},
            {"name": "h", "kind": "http", "url": "https://example.com/hook", "timeout_seconds": 5},
            {"name": "x", "kind": "transform", "expression": "{id: event.id, echoed: steps.t}"},
            {"name": "e", "kind": "enqueue", "task_name": "echo", "items": "event.lines"}
        ]))
        .unwrap();
        assert_eq!(s.check(), Ok(()));
        assert_eq!(s.steps[2].kind.name(), "http");
        assert_eq!(s.steps[1].retries, 2);
    }

    #[test]
    fn unknown_kinds_and_fields_do_not_parse() {
        assert!(spec(json!([{"name": "a", "kind": "teleport"}])).is_err());
        assert!(
            spec(json!([{"name": "a", "kind": "transform", "expression": "a", "extra": 1}]))
                .is_err()
        );
        assert!(spec(json!([{"name": "a"}])).is_err());
    }

    #[test]
    fn bad_definitions_name_the_field() {
        let field = |steps: Value| spec(steps).unwrap().check().unwrap_err().field;
        assert_eq!(field(json!([])), "steps");
        assert_eq!(
            field(json!([{"name": "a", "kind": "transform", "expression": "a[?"}])),
            "steps[0].expression"
        );
        assert_eq!(
            field(json!([{"name": "a", "kind": "validate", "schema": {"type": 5}}])),
            "steps[0].schema"
        );
        assert_eq!(
            field(json!([{"name": "a", "kind": "http", "url": "ftp://x"}])),
            "steps[0].url"
        );
        assert_eq!(
            field(
                json!([{"name": "a", "kind": "task", "task_name": "echo"}, {"name": "a", "kind": "task", "task_name": "echo"}])
            ),
            "steps[1].name"
        );
        let mut bad_schema = spec(json!([{"name": "a", "kind": "validate"}])).unwrap();
        bad_schema.event_schema = Some(json!({"type": "no-such-type"}));
        assert_eq!(bad_schema.check().unwrap_err().field, "event_schema");
    }

    #[test]
    fn violations_carry_paths_and_messages() {
        let schema = json!({"type": "object", "required": ["id"], "properties": {"qty": {"type": "integer"}}});
        assert!(violations(&schema, &json!({"id": 1, "qty": 2})).is_empty());
        let v = violations(&schema, &json!({"qty": "two"}));
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v.iter().any(|e| e.path == "/qty"));
        assert!(
            v.iter()
                .any(|e| e.path.is_empty() && e.message.contains("id"))
        );
    }

    #[test]
    fn expressions_reshape_the_context() {
        let ctx = json!({"event": {"id": 7, "lines": [{"sku": "a"}, {"sku": "b"}]}, "steps": {}});
        assert_eq!(
            Expression::compile("{id: event.id, skus: event.lines[].sku}")
                .and_then(|e| e.evaluate(&ctx))
                .map_err(|e| e.to_string()),
            Ok(json!({"id": 7, "skus": ["a", "b"]}))
        );
    }
}
