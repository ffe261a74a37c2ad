//! Checking inputs against a pipeline's schemas: each schema is compiled
//! once per pipeline version (versions never change once written) and
//! checked on a blocking thread under a time budget, so a costly schema
//! neither stalls the async workers nor holds a request for long.

use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use super::Deps;
use super::compiled::Compiled;
use crate::domain::pipeline::{Pipeline, SchemaViolation, compile_schema, violations_of};

/// The longest one check may take; past it the input counts as invalid.
pub const VALIDATION_BUDGET: Duration = Duration::from_secs(2);
/// Compiled schemas kept; past this many the cache starts afresh.
const CACHED_SCHEMAS: usize = 512;

/// Which schema of which pipeline version: its `event_schema` (`step:
/// None`) or that of the `validate` step at this index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SchemaId {
    pub pipeline: Uuid,
    pub version: u32,
    pub step: Option<usize>,
}

impl SchemaId {
    /// The event schema of `pipeline`, or its step `step`'s schema.
    pub fn of(pipeline: &Pipeline, step: Option<usize>) -> Self {
        SchemaId {
            pipeline: pipeline.id,
            version: pipeline.version,
            step,
        }
    }
}

static COMPILED: Compiled<SchemaId, jsonschema::Validator> = Compiled::new(CACHED_SCHEMAS);

/// Every way `instance` breaks `schema`, the schema `id` names. A schema
/// that does not compile, or a check that outruns [`VALIDATION_BUDGET`], is
/// one violation saying so.
pub async fn violations(
    deps: &Deps,
    id: SchemaId,
    schema: &Value,
    instance: Value,
) -> Vec<SchemaViolation> {
    let validator = match COMPILED.get_or_compile(id, || compile_schema(schema)) {
        Ok(v) => v,
        Err(message) => return vec![whole(message)],
    };
    let check = super::on_cpu(deps, move || violations_of(&validator, &instance));
    match tokio::time::timeout(VALIDATION_BUDGET, check).await {
        Ok(Ok(found)) => found,
        Ok(Err(crash)) => vec![whole(format!("schema check crashed: {crash}"))],
        Err(_) => vec![whole(format!(
            "checking the input against the schema took longer than {} s",
            VALIDATION_BUDGET.as_secs()
        ))],
    }
}

fn whole(message: String) -> SchemaViolation {
    SchemaViolation {
        path: String::new(),
        message,
    }
}
