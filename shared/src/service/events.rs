//! Event ingestion (`POST /events`): store the event and the execution of
//! its workflow in one transaction, queue the execution; the execution's
//! final checkpoint writes the event's outcome.

use serde_json::Value;
use uuid::Uuid;

use super::executions;
use super::pipelines;
use super::schemas::{self, SchemaId};
use super::{Deps, ServiceError, found};
use crate::domain::event::{Event, EventStatus};
use crate::domain::execution::{Execution, TriggerType};
use crate::domain::pipeline::{Pipeline, SchemaViolation};
use crate::table::events;

/// What became of a posted event.
#[derive(Debug)]
pub enum Ingested {
    /// Stored and queued.
    Queued { event_id: Uuid, execution_id: Uuid },
    /// Refused at once (`validate=sync`): nothing was stored.
    Invalid(Vec<SchemaViolation>),
}

/// Store `data` as an event for `workflow` (else the configured default)
/// and queue its execution. With `validate_now`, data that breaks the
/// pipeline's `event_schema` is refused before anything is stored.
pub async fn ingest(
    deps: &Deps,
    data: Value,
    workflow: Option<Uuid>,
    validate_now: bool,
) -> Result<Ingested, ServiceError> {
    let pipeline = self::workflow(deps, workflow).await?;
    ingest_into(deps, data, &pipeline, validate_now).await
}

/// The pipeline `POST /events` runs for `workflow` (else the configured
/// default).
pub async fn workflow(deps: &Deps, workflow: Option<Uuid>) -> Result<Pipeline, ServiceError> {
    let Some(workflow) = workflow.or(deps.config.default_workflow) else {
        return Err(ServiceError::invalid(
            "no_workflow",
            "no workflow named: pass ?workflow=<pipeline id> (no default workflow is configured)",
        ));
    };
    pipelines::get(deps, workflow, None).await
}

/// [`ingest`] into the current version of `pipeline`.
pub async fn ingest_into(
    deps: &Deps,
    data: Value,
    pipeline: &Pipeline,
    validate_now: bool,
) -> Result<Ingested, ServiceError> {
    let workflow = pipeline.id;
    if validate_now && let Some(schema) = &pipeline.spec.event_schema {
        let found =
            schemas::violations(deps, SchemaId::of(pipeline, None), schema, data.clone()).await;
        if !found.is_empty() {
            return Ok(Ingested::Invalid(found));
        }
    }
    let now = deps.now();
    let event_id = Uuid::now_v7();
    let mut execution = Execution::new(
        crate::table::executions::new_id(pipeline.id),
        pipeline,
        TriggerType::Ingest,
        Some(event_id.to_string()),
        data.clone(),
        now,
    );
    execution.event_id = Some(event_id);
    let event = Event {
        id: event_id,
        data,
        workflow,
        pipeline_version: pipeline.version,
        execution_id: execution.id,
        status: EventStatus::Pending,
        result: None,
        error: None,
        validation_errors: None,
        created_at: now,
        updated_at: now,
        user_id: pipeline.user_id,
    };
    let put_event = events::create(&event, deps.config.execution_retention, now);
    executions::start(deps, &execution, vec![put_event]).await?;
    Ok(Ingested::Queued {
        event_id,
        execution_id: execution.id,
    })
}

/// The stored event with its status and result.
pub async fn get(deps: &Deps, id: Uuid) -> Result<Event, ServiceError> {
    let now = deps.now().timestamp();
    found(events::get(&*deps.store, id, now).await?, "no such event")
}
