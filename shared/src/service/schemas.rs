//! Checking inputs against a pipeline's schemas: each schema is compiled
//! once per pipeline version (versions never change once written) and
//! checked on a blocking thread under a time budget, so a costly schema
//! neither stalls the async workers nor holds a request for long.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

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

static COMPILED: LazyLock<Mutex<HashMap<SchemaId, Arc<jsonschema::Validator>>>> =
    LazyLock::new(Mutex::default);

/// Every way `instance` breaks `schema`, the schema `id` names. A schema
/// that does not compile, or a check that outruns [`VALIDATION_BUDGET`], is
/// one violation saying so.
pub async fn violations(id: SchemaId, schema: &Value, instance: Value) -> Vec<SchemaViolation> {
    let cached = lock().get(&id).cloned();
    let validator = match cached {
        Some(v) => v,
        None => match compile_schema(schema) {
            Ok(v) => {
                let v = Arc::new(v);
                let mut cache = lock();
                if cache.len() >= CACHED_SCHEMAS {
                    cache.clear();
                }
                cache.insert(id, v.clone());
                v
            }
            Err(message) => return vec![whole(message)],
        },
    };
    let check = tokio::task::spawn_blocking(move || violations_of(&validator, &instance));
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

fn lock() -> std::sync::MutexGuard<'static, HashMap<SchemaId, Arc<jsonschema::Validator>>> {
    // The map is valid whatever a panicking holder did: entries are whole.
    COMPILED.lock().unwrap_or_else(|e| e.into_inner())
}
