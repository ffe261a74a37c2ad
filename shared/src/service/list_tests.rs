//! Task lists over the table's queue partitions: merged newest first
//! across queues and shards, filtered, and paged by cursor so that every
//! task is listed once.

use uuid::Uuid;

use super::tests::{admin, created, new_task, receive_all, setup};
use super::worker::process;
use crate::Deps;
use crate::domain::TaskStatus;
use crate::handlers::Registry;
use crate::table::tasks::TaskFilter;

/// Every task `filter` lists, page by page (`limit` each), and how many
/// pages that took.
async fn all_pages(deps: &Deps, mut filter: TaskFilter, limit: usize) -> (Vec<Uuid>, usize) {
    let (mut ids, mut pages) = (Vec::new(), 0);
    loop {
        let page = deps.tasks().list(&filter, limit).await.unwrap();
        pages += 1;
        assert!(page.tasks.len() <= limit);
        ids.extend(page.tasks.iter().map(|t| t.id));
        match page.next {
            Some(cursor) => filter.before = Some(cursor),
            None => return (ids, pages),
        }
    }
}

fn newest_first(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort();
    ids.reverse();
    ids
}

#[tokio::test]
async fn lists_merge_every_queue_newest_first_and_page_each_task_once() {
    // GIVEN 60 tasks over four queues, every third one run to completion
    let (deps, _) = setup(Registry::standard());
    let mut by_queue: Vec<(String, Uuid)> = Vec::new();
    for i in 0..60 {
        let mut t = new_task("echo");
        t.queue_name = ["a", "b", "c", "d"][i % 4].into();
        t.args = vec![serde_json::json!(i)];
        by_queue.push((t.queue_name.clone(), created(&deps, t).await));
    }
    let messages = receive_all(&deps).await;
    let mut all_messages = messages;
    while all_messages.len() < 60 {
        let more = receive_all(&deps).await;
        assert!(!more.is_empty(), "every task has its message");
        all_messages.extend(more);
    }
    let completed: Vec<Uuid> = by_queue.iter().step_by(3).map(|(_, id)| *id).collect();
    for m in &all_messages {
        if completed.iter().any(|id| m.body.contains(&id.to_string())) {
            process(&deps, &m.body).await.unwrap();
        }
    }
    let everything = newest_first(by_queue.iter().map(|(_, id)| *id).collect());

    // THEN the unfiltered list pages through every task once, newest first
    let (listed, pages) = all_pages(&deps, TaskFilter::default(), 7).await;
    assert_eq!(listed, everything);
    assert_eq!(pages, 9, "60 tasks in pages of 7");

    // AND a status read from the table, across queues and within one
    let status = |s| TaskFilter {
        status: Some(s),
        ..TaskFilter::default()
    };
    let (done, _) = all_pages(&deps, status(TaskStatus::Completed), 4).await;
    assert_eq!(done, newest_first(completed.clone()));
    let b_pending = TaskFilter {
        queue: Some("b".into()),
        ..status(TaskStatus::Pending)
    };
    let expected: Vec<Uuid> = by_queue
        .iter()
        .filter(|(q, id)| q == "b" && !completed.contains(id))
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(
        all_pages(&deps, b_pending, 3).await.0,
        newest_first(expected)
    );
}

#[tokio::test]
async fn a_status_read_from_the_table_pages_past_its_read_budget() {
    // GIVEN one pending task, older than 1,100 cancelled tasks of its queue
    // and 50 tasks of another queue
    let (deps, _) = setup(Registry::standard());
    let pending = created(&deps, new_task("echo")).await;
    for _ in 0..1100 {
        let id = created(&deps, new_task("echo")).await;
        super::control::cancel(&deps, id, &admin()).await.unwrap();
    }
    for _ in 0..50 {
        let mut t = new_task("echo");
        t.queue_name = "other".into();
        created(&deps, t).await;
    }
    // WHEN its queue's pending tasks are listed
    let filter = TaskFilter {
        queue: Some("default".into()),
        status: Some(TaskStatus::Pending),
        ..TaskFilter::default()
    };
    let first = deps.tasks().list(&filter, 10).await.unwrap();
    // THEN the first page stops at its read budget, empty, with a cursor,
    // and the pages that follow find the task, once
    assert!(first.tasks.is_empty());
    assert!(first.next.is_some());
    let (listed, pages) = all_pages(&deps, filter, 10).await;
    assert_eq!((listed, pages), (vec![pending], 2));
    // AND the cancelled ones, which an index holds, come in full pages
    let cancelled = TaskFilter {
        queue: Some("default".into()),
        status: Some(TaskStatus::Cancelled),
        ..TaskFilter::default()
    };
    let page = deps.tasks().list(&cancelled, 500).await.unwrap();
    assert_eq!(page.tasks.len(), 500);
}

/// A store that notes how many queries are in flight at once.
struct Overlap {
    inner: std::sync::Arc<dyn crate::ports::Store>,
    in_flight: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl crate::ports::Store for Overlap {
    async fn get(
        &self,
        key: &crate::ports::Key,
    ) -> Result<Option<crate::ports::Item>, crate::ports::StoreError> {
        self.inner.get(key).await
    }

    async fn transact(
        &self,
        ops: Vec<crate::ports::WriteOp>,
    ) -> Result<(), crate::ports::StoreError> {
        self.inner.transact(ops).await
    }

    async fn put_batch(
        &self,
        items: Vec<crate::ports::Item>,
    ) -> Result<(), crate::ports::StoreError> {
        self.inner.put_batch(items).await
    }

    async fn query(
        &self,
        query: &crate::ports::Query,
    ) -> Result<Vec<crate::ports::Item>, crate::ports::StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        // A round trip: the others of a concurrent read start meanwhile.
        tokio::task::yield_now().await;
        let out = self.inner.query(query).await;
        self.in_flight.fetch_sub(1, SeqCst);
        out
    }

    async fn increment(
        &self,
        key: &crate::ports::Key,
        attr: &str,
        limit: i64,
        ttl: Option<i64>,
    ) -> Result<Option<i64>, crate::ports::StoreError> {
        self.inner.increment(key, attr, limit, ttl).await
    }
}

#[tokio::test]
async fn a_list_reads_its_partitions_at_once_not_one_after_another() {
    // GIVEN tasks in two queues, read through a store that notes overlaps
    let (deps, _) = setup(Registry::standard());
    let mut ids = Vec::new();
    for i in 0..20 {
        let mut t = new_task("echo");
        t.queue_name = ["a", "b"][i % 2].into();
        ids.push(created(&deps, t).await);
    }
    let overlap = std::sync::Arc::new(Overlap {
        inner: deps.store.clone(),
        in_flight: Default::default(),
        most: Default::default(),
    });
    let deps = Deps {
        store: overlap.clone(),
        ..deps
    };
    // WHEN every task is listed
    let (listed, _) = all_pages(&deps, TaskFilter::default(), 100).await;
    // THEN all are there, and the 8 partitions were read at once: a page
    // costs one round trip, not eight
    assert_eq!(listed, newest_first(ids));
    let most = overlap.most.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(most, 8, "queries in flight at once");
}
