//! Task handlers: the Rust functions a task can run, looked up by
//! `task_name`. There is no dynamic loading: a task names a handler that was
//! compiled in. Built-ins live in [`builtin`]; add your own in [`custom`].

pub mod builtin;
pub mod custom;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ports::HttpClient;

/// What a handler gets to work with.
#[derive(Clone)]
pub struct TaskContext {
    pub task_id: Option<Uuid>,
    pub task_name: String,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Guarded outgoing HTTP (no private destinations unless allow-listed).
    pub http: Arc<dyn HttpClient>,
}

impl TaskContext {
    /// A keyword argument, or a failure naming it.
    pub fn kwarg(&self, name: &str) -> Result<&Value, TaskFailure> {
        self.kwargs
            .get(name)
            .ok_or_else(|| TaskFailure::fatal(format!("missing kwargs.{name}")))
    }
}

/// Why an attempt failed, and whether another attempt could succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskFailure {
    pub message: String,
    pub retryable: bool,
}

impl TaskFailure {
    /// A failure worth retrying (per the task's retry policy).
    pub fn retry(message: impl Into<String>) -> Self {
        TaskFailure {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure no retry can fix (bad arguments, unknown task): fails the task now.
    pub fn fatal(message: impl Into<String>) -> Self {
        TaskFailure {
            message: message.into(),
            retryable: false,
        }
    }
}

/// The future a handler returns: its result value, or a failure.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, TaskFailure>> + Send>>;
type HandlerFn = dyn Fn(TaskContext) -> HandlerFuture + Send + Sync;

/// The handlers this build knows, by task name.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<HandlerFn>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-ins plus everything [`custom::register`] adds.
    pub fn standard() -> Self {
        let mut r = Registry::new();
        builtin::register(&mut r);
        custom::register(&mut r);
        r
    }

    /// Register `handler` under `name` (a later registration replaces an earlier one).
    pub fn register<F, Fut>(&mut self, name: &str, handler: F)
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, TaskFailure>> + Send + 'static,
    {
        self.handlers.insert(
            name.to_string(),
            Arc::new(move |ctx| Box::pin(handler(ctx))),
        );
    }

    /// Run the handler named by the context's task name.
    pub fn run(&self, ctx: TaskContext) -> HandlerFuture {
        match self.handlers.get(&ctx.task_name) {
            Some(h) => h(ctx),
            None => {
                let name = ctx.task_name.clone();
                Box::pin(async move {
                    Err(TaskFailure::fatal(format!(
                        "unknown task `{name}`: no handler is registered under that name"
                    )))
                })
            }
        }
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut n: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        n.sort_unstable();
        n
    }
}
