//! What pipelines compile (JSON Schemas, JMESPath expressions), kept per
//! process: a pipeline version never changes once written, so neither does
//! what its schemas and expressions compile to. Compiling a JMESPath
//! expression starts a thread (the parser needs a deep stack); a schema
//! compiles its regular expressions: neither belongs on every run.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

/// A bounded map from what was compiled to its compiled form. Past
/// `capacity` entries it starts afresh: simpler than an LRU, and a working
/// set larger than the bound only costs recompiling.
pub struct Compiled<K, V> {
    entries: Mutex<Option<HashMap<K, Arc<V>>>>,
    capacity: usize,
}

impl<K: Eq + Hash, V> Compiled<K, V> {
    /// An empty cache of at most `capacity` entries (usable in a `static`).
    pub const fn new(capacity: usize) -> Self {
        Compiled {
            entries: Mutex::new(None),
            capacity,
        }
    }

    /// The compiled form of `key`: cached, or `compile`d now (outside the
    /// lock, so a slow compile holds up nobody) and kept when it succeeds.
    pub fn get_or_compile<E>(
        &self,
        key: K,
        compile: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        if let Some(found) = self.lock().as_ref().and_then(|m| m.get(&key)) {
            return Ok(found.clone());
        }
        let compiled = Arc::new(compile()?);
        let mut entries = self.lock();
        let map = entries.get_or_insert_with(HashMap::new);
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(key, compiled.clone());
        Ok(compiled)
    }

    fn lock(&self) -> MutexGuard<'_, Option<HashMap<K, Arc<V>>>> {
        // The map is valid whatever a panicking holder did: entries are whole.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_once_keeps_only_successes_and_stays_bounded() {
        let cache: Compiled<u32, String> = Compiled::new(2);
        let mut compiles = 0;
        for _ in 0..3 {
            let got = cache.get_or_compile(1, || {
                compiles += 1;
                Ok::<_, ()>("one".to_string())
            });
            assert_eq!(*got.unwrap(), "one");
        }
        assert_eq!(compiles, 1);
        assert!(cache.get_or_compile(2, || Err::<String, _>("bad")).is_err());
        assert!(
            cache
                .get_or_compile(2, || Ok::<_, ()>("two".into()))
                .is_ok()
        );
        // A third key overflows the bound: the map starts afresh.
        cache
            .get_or_compile(3, || Ok::<_, ()>("three".into()))
            .unwrap();
        assert_eq!(cache.lock().as_ref().unwrap().len(), 1);
    }
}
