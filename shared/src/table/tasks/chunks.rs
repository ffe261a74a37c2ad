//! Chunks: up to [`CHUNK_TASKS`] tasks of one batch in one item, enqueued,
//! started and finished with one write each instead of one per task
//! (docs/COST.md: a kept task's floor of three writes becomes three per
//! chunk).
//!
//! A member's id is its chunk's base id (a task id of its queue with
//! [`FLAG`] set and the member bits clear) with its number, 1 to
//! [`CHUNK_TASKS`], in the four bits above the tag. So a get by id finds
//! the chunk from the id alone, the chunk item sits in its queue's
//! partition at the base id (`TQ#<tag>` / base), and a member that leaves
//! it ([`crate::table::tasks::Tasks::save`]: a write that needs a timer or
//! an index) moves to its own id's key, which sorts just above the chunk's.
//! A plain task id never has [`FLAG`] set.
//!
//! In a list, a chunk's members take the positions `<base>!<number>`,
//! between the chunk's key and its members' own keys, so a page that ends
//! within a chunk has a cursor that reads the chunk again and skips what
//! was listed.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::super::tagged;
use crate::domain::Task;
use crate::ports::{Condition, Item, WriteOp};

/// The most tasks in one chunk: a worker runs a chunk's tasks together, as
/// it runs the ten messages of one receive.
pub const CHUNK_TASKS: usize = 10;

/// Set in a chunk's ids, clear in every other task id.
const FLAG: u128 = 1 << 36;
const MEMBER_SHIFT: u32 = 32;
const MEMBER_BITS: u128 = 0xf << MEMBER_SHIFT;

/// A task id of `queue` that no chunk can hold.
pub fn plain_id(queue: &str) -> Uuid {
    Uuid::from_u128(fresh(queue))
}

/// A new task id of `queue` with the flag and member bits clear. Above
/// its tag, a UUIDv7 holds the 42-bit counter that tells apart (and
/// orders) the ids a process makes within one millisecond, its lowest
/// bits where the flag and member bits go: the counter keeps its low 37
/// bits, moved up above them.
fn fresh(queue: &str) -> u128 {
    const LOW: u32 = 30;
    const KEPT: u32 = 37;
    let id = tagged::new_id(queue).as_u128();
    let rand_a = (id >> 64) & 0xfff;
    let counter = ((rand_a << LOW) | ((id >> 32) & ((1 << LOW) - 1))) & ((1 << KEPT) - 1);
    let cleared = id & !(0xfff << 64) & !(((1 << LOW) - 1) << 32);
    let above = KEPT - 12;
    cleared | ((counter >> above) << 64) | ((counter & ((1 << above) - 1)) << 37)
}

/// The ids of a new chunk of `n` tasks of `queue` (at most
/// [`CHUNK_TASKS`]): its base id, and its members' ids.
pub fn new_ids(queue: &str, n: usize) -> (Uuid, Vec<Uuid>) {
    let base = fresh(queue) | FLAG;
    let members = (1..=n.min(CHUNK_TASKS) as u128)
        .map(|i| member_id(Uuid::from_u128(base), i as u8))
        .collect();
    (Uuid::from_u128(base), members)
}

/// The base id of the chunk that may hold task `id`, and the task's
/// number in it; `None` for an id no chunk holds.
pub fn member_of(id: Uuid) -> Option<(Uuid, u8)> {
    let bits = id.as_u128();
    let number = ((bits & MEMBER_BITS) >> MEMBER_SHIFT) as u8;
    (bits & FLAG != 0 && number != 0).then(|| (Uuid::from_u128(bits & !MEMBER_BITS), number))
}

/// The id of member `number` of the chunk with base id `base`.
pub fn member_id(base: Uuid, number: u8) -> Uuid {
    Uuid::from_u128(base.as_u128() | (u128::from(number) << MEMBER_SHIFT))
}

/// The tasks of one chunk, as stored at one version.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub base: Uuid,
    /// Every write of the chunk is a compare-and-set on it.
    pub version: u64,
    /// By number; a member that left is absent.
    pub members: BTreeMap<u8, Task>,
}

impl Chunk {
    /// A new chunk of `tasks`, whose ids [`new_ids`] made.
    pub fn new(base: Uuid, tasks: Vec<Task>) -> Chunk {
        let members = tasks
            .into_iter()
            .filter_map(|t| Some((member_of(t.id)?.1, t)))
            .collect();
        Chunk {
            base,
            version: 1,
            members,
        }
    }

    /// The member with this id.
    pub fn get(&self, id: Uuid) -> Option<&Task> {
        let (base, number) = member_of(id)?;
        (base == self.base).then(|| self.members.get(&number))?
    }

    /// The same chunk at its next version, `change` made to its members.
    pub fn changed(&self, change: impl FnOnce(&mut BTreeMap<u8, Task>)) -> Chunk {
        let mut next = self.clone();
        change(&mut next.members);
        next.version += 1;
        next
    }

    /// The same chunk at its next version, `tasks` (its members) in their
    /// places.
    pub fn with(&self, tasks: &[Task]) -> Chunk {
        self.changed(|members| {
            for task in tasks {
                if let Some((_, number)) = member_of(task.id) {
                    members.insert(number, task.clone());
                }
            }
        })
    }

    /// The chunk an item holds; `None` for any other item.
    pub fn from_item(item: &Item) -> Option<Chunk> {
        // Checked first: lists try every item they read.
        let stored = item.attrs.get("members")?.as_object()?;
        let base = super::id_of(&item.key)?;
        if member_of(base).is_some() {
            return None;
        }
        let version = item.attrs.get("chunk_version")?.as_u64()?;
        let common = match item.attrs.get("common") {
            Some(c) => c.as_object()?.clone(),
            None => Map::new(),
        };
        let mut members = BTreeMap::new();
        for (number, own) in stored {
            let number: u8 = number.parse().ok()?;
            let mut attrs = common.clone();
            attrs.extend(own.as_object()?.clone());
            attrs.insert(
                "id".into(),
                Value::from(member_id(base, number).to_string()),
            );
            members.insert(number, serde_json::from_value(Value::Object(attrs)).ok()?);
        }
        Some(Chunk {
            base,
            version,
            members,
        })
    }

    /// The chunk's item: in no index, with no TTL (a task that needs either
    /// leaves its chunk). What every member has alike (a batch's tasks
    /// mostly differ in their arguments alone) is stored once, in
    /// `common`; a member's id is the base's with its number; nulls are
    /// left out. So a chunk of ten small tasks fits one write unit.
    pub fn item(&self) -> Item {
        let mut all: Vec<(u8, Map<String, Value>)> = self
            .members
            .iter()
            .map(|(number, task)| {
                let mut attrs = super::super::attrs_of(task);
                attrs.retain(|name, v| !v.is_null() && name != "id");
                (*number, attrs)
            })
            .collect();
        let mut common = Map::new();
        if let [(_, first), rest @ ..] = all.as_slice()
            && !rest.is_empty()
        {
            common = first
                .iter()
                .filter(|(name, v)| rest.iter().all(|(_, m)| m.get(*name) == Some(*v)))
                .map(|(name, v)| (name.clone(), v.clone()))
                .collect();
        }
        let members: Map<String, Value> = all
            .iter_mut()
            .map(|(number, attrs)| {
                attrs.retain(|name, _| !common.contains_key(name));
                (number.to_string(), Value::Object(std::mem::take(attrs)))
            })
            .collect();
        let mut attrs = Map::new();
        attrs.insert("chunk_version".into(), Value::from(self.version));
        attrs.insert("common".into(), Value::Object(common));
        attrs.insert("members".into(), Value::Object(members));
        Item::new(super::key(self.base), attrs)
    }

    /// The write that replaces `prev` (the version read) by this chunk. A
    /// chunk whose members have all left stays, empty (a few bytes): its
    /// key is never reused, and its history reads plainly (each write of
    /// it says which members it holds).
    pub fn write_over(&self, prev: &Chunk) -> WriteOp {
        WriteOp::Put {
            item: self.item(),
            cond: Condition::Equals {
                attr: "chunk_version".into(),
                value: Value::from(prev.version),
            },
        }
    }

    /// The members with their positions in a list, highest first (see the
    /// module's doc).
    pub fn positions(&self) -> impl Iterator<Item = (String, &Task)> {
        self.members
            .iter()
            .rev()
            .map(|(number, task)| (format!("{}!{number:x}", self.base), task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_members_id_names_its_chunk_and_a_plain_id_none() {
        let (base, ids) = new_ids("emails", 10);
        assert_eq!(ids.len(), 10);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(member_of(*id), Some((base, i as u8 + 1)));
            // Same queue partitions as any task of the queue.
            assert_eq!(tagged::key("TQ#", *id).pk, tagged::key("TQ#", base).pk);
        }
        assert_eq!(member_of(base), None);
        for _ in 0..100 {
            assert_eq!(member_of(plain_id("emails")), None);
        }
    }

    #[test]
    fn ids_made_at_once_are_unique_and_in_order() {
        let plain: Vec<Uuid> = (0..20_000).map(|_| plain_id("q")).collect();
        let mut sorted = plain.clone();
        sorted.sort();
        assert_eq!(sorted, plain, "in the order made");
        sorted.dedup();
        assert_eq!(sorted.len(), plain.len(), "unique");
        let mut members = Vec::new();
        for _ in 0..2_000 {
            let (base, ids) = new_ids("q", CHUNK_TASKS);
            assert_eq!(member_of(base), None);
            members.push(base);
            members.extend(ids);
        }
        let n = members.len();
        members.sort();
        members.dedup();
        assert_eq!(members.len(), n, "unique");
        for id in plain.iter().take(100) {
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(member_of(*id), None);
        }
    }

    #[test]
    fn members_list_between_their_chunk_and_their_own_keys() {
        let (base, ids) = new_ids("q", 10);
        let positions: Vec<String> = (1..=10u8).rev().map(|n| format!("{base}!{n:x}")).collect();
        let mut sorted = positions.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(sorted, positions, "positions sort by number");
        for id in &ids {
            assert!(id.to_string() > positions[0], "own keys sort above");
        }
        assert!(
            base.to_string() < positions[9],
            "the chunk's key sorts below"
        );
    }
}
