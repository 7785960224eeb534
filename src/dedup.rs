//! Recent message ids (interface stub; implementation from the assembler branch).
#![allow(missing_docs, unused_variables)]
pub struct Dedup;
impl Dedup {
    pub fn new(capacity: usize) -> Self {
        Dedup
    }
    pub fn contains(&self, id: &str) -> bool {
        false
    }
    pub fn check_and_insert(&mut self, id: &str) -> bool {
        false
    }
}
