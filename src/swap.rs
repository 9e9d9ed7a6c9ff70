//! A value that readers load at each use and that a reload replaces: the routers, the jobs and
//! the TLS certificate each sit behind one. Its own module so that the parts reading a value
//! (http, scheduler) do not depend on the reload that writes it.

use std::sync::{Arc, RwLock};

/// A value readers load at each use and a reload replaces. Loads are a read lock and an `Arc`
/// clone: cheap next to a request, and a reader keeps the value it loaded for as long as it needs.
pub struct Swap<T>(RwLock<Arc<T>>);

impl<T> Swap<T> {
    pub fn new(value: impl Into<Arc<T>>) -> Swap<T> {
        Swap(RwLock::new(value.into()))
    }

    pub fn load(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn store(&self, value: impl Into<Arc<T>>) {
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = value.into();
    }
}
