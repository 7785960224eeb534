//! Message-level duplicate detection: a bounded set of recently seen AMQP `messageId`s.
//!
//! Aliyun delivers at least once and keeps a message's `messageId` on redelivery, so the engine
//! drops a message whose id it saw recently before handing it to the assembler (docs/protocol.md
//! 2 and 3.2: "a repeated `messageId` is dropped before parsing"). The window is a count, not a
//! time: the `capacity` most recently *first seen* ids are remembered and the oldest is forgotten
//! first (FIFO; seeing an id again does not refresh it). Redeliveries that fall outside the window
//! are still caught by the assembler's own chunk-level duplicate checks.
//!
//! Empty ids (a delivery without `messageId`) are never deduplicated and never stored.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

/// A bounded FIFO set of recent message ids. Insert and lookup are O(1).
#[derive(Debug, Clone, Default)]
pub struct Dedup {
    /// Membership.
    seen: HashSet<Arc<str>>,
    /// Insertion order, oldest first; shares the strings with `seen`.
    order: VecDeque<Arc<str>>,
    /// Most ids remembered.
    capacity: usize,
}

impl Dedup {
    /// A set that remembers the last `capacity` distinct ids (0 remembers nothing).
    pub fn new(capacity: usize) -> Self {
        // Pre-size modestly: a large window fills up over time anyway.
        let initial = capacity.min(4096);
        Dedup {
            seen: HashSet::with_capacity(initial),
            order: VecDeque::with_capacity(initial),
            capacity,
        }
    }

    /// Records `id` and returns whether it was seen before (true = a duplicate to drop).
    /// An empty id always returns false and is not recorded.
    pub fn check_and_insert(&mut self, id: &str) -> bool {
        if id.is_empty() || self.capacity == 0 {
            return false;
        }
        if self.seen.contains(id) {
            return true;
        }
        while self.order.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.seen.remove(&old);
                }
                None => break,
            }
        }
        let id: Arc<str> = Arc::from(id);
        self.seen.insert(Arc::clone(&id));
        self.order.push_back(id);
        false
    }

    /// Whether `id` is currently remembered (does not record it).
    pub fn contains(&self, id: &str) -> bool {
        !id.is_empty() && self.seen.contains(id)
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Most ids remembered.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_sight_is_a_duplicate() {
        let mut d = Dedup::new(8);
        assert!(!d.check_and_insert("a"));
        assert!(!d.check_and_insert("b"));
        assert!(d.check_and_insert("a"));
        assert!(d.check_and_insert("b"));
        assert_eq!(d.len(), 2);
        assert!(d.contains("a"));
        assert!(!d.contains("c"));
    }

    #[test]
    fn empty_ids_are_never_duplicates() {
        let mut d = Dedup::new(8);
        assert!(!d.check_and_insert(""));
        assert!(!d.check_and_insert(""));
        assert!(d.is_empty());
        assert!(!d.contains(""));
    }

    #[test]
    fn capacity_evicts_the_oldest_first() {
        let mut d = Dedup::new(3);
        for id in ["1", "2", "3"] {
            assert!(!d.check_and_insert(id));
        }
        // Seeing "1" again does not refresh it (FIFO, not LRU).
        assert!(d.check_and_insert("1"));
        assert!(!d.check_and_insert("4"));
        assert_eq!(d.len(), 3);
        assert!(!d.contains("1"), "oldest id evicted");
        assert!(d.contains("2") && d.contains("3") && d.contains("4"));
        // The evicted id is new again.
        assert!(!d.check_and_insert("1"));
        assert!(!d.contains("2"));
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut d = Dedup::new(0);
        assert!(!d.check_and_insert("x"));
        assert!(!d.check_and_insert("x"));
        assert!(d.is_empty());
        assert_eq!(d.capacity(), 0);
    }

    #[test]
    fn long_run_stays_bounded() {
        let mut d = Dedup::new(100);
        for i in 0..10_000u32 {
            assert!(!d.check_and_insert(&i.to_string()));
            assert!(d.check_and_insert(&i.to_string()));
        }
        assert_eq!(d.len(), 100);
        assert!(d.contains("9999") && d.contains("9900") && !d.contains("9899"));
    }
}
