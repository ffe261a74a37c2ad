//! A [`Store`] that passes every call to an inner store, except the
//! transactions its hook stops: for tests that fail, refuse or hang one
//! chosen write, as a broken partition, an unavailable backend or a process
//! that died inside the call would. [`InterceptQueue`] does the same for a
//! queue's sends.

use std::sync::Arc;

use async_trait::async_trait;

use std::time::Duration;

use crate::ports::{
    Delivery, Item, Key, OutgoingMessage, Query, Queue, QueueError, Store, StoreError, WriteOp,
};

/// What [`InterceptStore`]'s hook makes of a transaction.
pub enum Intercepted {
    /// Hand it to the inner store.
    PassOn,
    /// Answer with this error; nothing is written.
    Refuse(StoreError),
    /// Write it, then answer with this error, as a call whose answer was
    /// lost on the way back.
    LoseAnswer(StoreError),
    /// Never answer, as a process that died in the call.
    Hang,
}

/// The inner store, with `hook` deciding about each transaction before it
/// lands. Reads, batch puts and increments always pass.
pub struct InterceptStore<H> {
    inner: Arc<dyn Store>,
    hook: H,
}

impl<H> InterceptStore<H>
where
    H: Fn(&[WriteOp]) -> Intercepted + Send + Sync + 'static,
{
    pub fn new(inner: Arc<dyn Store>, hook: H) -> Arc<Self> {
        Arc::new(Self { inner, hook })
    }
}

#[async_trait]
impl<H> Store for InterceptStore<H>
where
    H: Fn(&[WriteOp]) -> Intercepted + Send + Sync + 'static,
{
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.inner.get(key).await
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        match (self.hook)(&ops) {
            Intercepted::PassOn => self.inner.transact(ops).await,
            Intercepted::Refuse(e) => Err(e),
            Intercepted::LoseAnswer(e) => self.inner.transact(ops).await.and(Err(e)),
            Intercepted::Hang => std::future::pending().await,
        }
    }

    async fn put_batch(&self, items: Vec<Item>) -> Result<(), StoreError> {
        self.inner.put_batch(items).await
    }

    async fn query(&self, query: &Query) -> Result<Vec<Item>, StoreError> {
        self.inner.query(query).await
    }

    async fn increment(
        &self,
        key: &Key,
        attr: &str,
        limit: i64,
        ttl: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        self.inner.increment(key, attr, limit, ttl).await
    }
}

/// The inner queue, with `refuse` deciding about each send: true answers
/// `Unavailable` and sends nothing. Receives, deletes and visibility changes
/// always pass.
pub struct InterceptQueue<H> {
    inner: Arc<dyn Queue>,
    refuse: H,
}

impl<H> InterceptQueue<H>
where
    H: Fn(&[OutgoingMessage]) -> bool + Send + Sync + 'static,
{
    pub fn new(inner: Arc<dyn Queue>, refuse: H) -> Arc<Self> {
        Arc::new(Self { inner, refuse })
    }
}

#[async_trait]
impl<H> Queue for InterceptQueue<H>
where
    H: Fn(&[OutgoingMessage]) -> bool + Send + Sync + 'static,
{
    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), QueueError> {
        if (self.refuse)(&messages) {
            return Err(QueueError::Unavailable("send refused".into()));
        }
        self.inner.send_batch(queue, messages).await
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        self.inner.receive(queue, max, visibility, wait).await
    }

    async fn delete_batch(&self, queue: &str, receipts: Vec<String>) -> Result<(), QueueError> {
        self.inner.delete_batch(queue, receipts).await
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        self.inner
            .change_visibility(queue, receipt, visibility)
            .await
    }
}
