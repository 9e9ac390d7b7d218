//! [`Live`]: a value the hub replaces while it runs (the roster on `hub reload`), read by many.
//!
//! Readers take the current `Arc` ([`Live::current`]) (one uncontended read lock and a reference count) and keep
//! it for as long as one piece of work needs a consistent view: a notification round sees one
//! roster from start to end, never half of an old one and half of a new one. A replacement
//! is atomic: readers see the old value or the new one.

use std::sync::{Arc, RwLock};

#[derive(Debug)]
pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    pub fn new(value: T) -> Self {
        Self(RwLock::new(Arc::new(value)))
    }

    /// The current value.
    pub fn current(&self) -> Arc<T> {
        // A poisoned lock still holds a whole value: the writer only swaps an `Arc`.
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the value; returns the one it replaced.
    pub fn set(&self, value: T) -> Arc<T> {
        let new = Arc::new(value);
        match self.0.write() {
            Ok(mut g) => std::mem::replace(&mut *g, new),
            Err(p) => std::mem::replace(&mut *p.into_inner(), new),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Live;

    #[test]
    fn a_reader_keeps_its_view_across_a_replacement() {
        let live = Live::new(1);
        let held = live.current();
        assert_eq!(*live.set(2), 1);
        assert_eq!((*held, *live.current()), (1, 2));
    }
}
