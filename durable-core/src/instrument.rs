//! `CountingBackend`: a wrapper that counts the calls a dict makes to its store — one call
//! is one round trip in every backend of this workspace. Tests use it to prove that a
//! no-change `sync()` makes no trip, benchmarks to report round trips per sync.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::backend::Backend;
use crate::error::Result;
use crate::wrap::{Call, Delegate, Wrap};

/// `CallCounts`, one field per method in [`Call::METHODS`] order (a test checks the order),
/// and the conversion from the counters.
macro_rules! call_counts {
    ($($method:ident: $doc:literal,)*) => {
        /// Calls made through a [`CountingBackend`], per method.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct CallCounts {
            $(#[doc = $doc] pub $method: u64,)*
        }

        impl CallCounts {
            /// Every call, summed.
            pub fn total(&self) -> u64 {
                0 $(+ self.$method)*
            }

            fn from_counters(counters: &[AtomicU64; Call::METHODS.len()]) -> Self {
                let mut counts = counters.iter().map(|counter| counter.load(Ordering::Relaxed));
                Self { $($method: counts.next().unwrap_or_default(),)* }
            }

            #[cfg(test)]
            const FIELDS: &[&str] = &[$(stringify!($method)),*];
        }
    };
}

call_counts! {
    persist: "`persist` calls.",
    depersist: "`depersist` calls.",
    durables: "`durables` calls (full reloads).",
    last_updated: "`last_updated` calls (version checks).",
    apply: "`apply` calls (batches).",
    pop: "`pop` calls.",
    setdefault: "`setdefault` calls.",
    changes_since: "`changes_since` calls (deltas).",
    watch: "`watch` calls (subscriptions).",
    compare_and_swap: "`compare_and_swap` calls.",
    journal: "`journal` calls (journal pages).",
    history: "`history` calls (a key's records).",
    lease: "`lease` calls (acquire, renew, release).",
    remove_namespace: "`remove_namespace` calls.",
}

/// Wraps a backend and counts calls to it; see [`CallCounts`]. Everything else is the
/// wrapped backend's (it is a [`Wrap`]).
pub struct CountingBackend {
    inner: Arc<dyn Backend>,
    counters: [AtomicU64; Call::METHODS.len()],
}

impl CountingBackend {
    /// Counts the calls made to `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self { inner, counters: Default::default() }
    }

    /// The calls counted so far.
    pub fn counts(&self) -> CallCounts {
        CallCounts::from_counters(&self.counters)
    }
}

#[async_trait]
impl Wrap for CountingBackend {
    fn label(&self) -> &'static str {
        "counting"
    }
    fn wrapped(&self) -> Option<Delegate<'_>> {
        Some(Delegate::from(&self.inner))
    }
    async fn enter(&self, call: Call<'_>) -> Result<Delegate<'_>> {
        self.counters[call.index()].fetch_add(1, Ordering::Relaxed);
        Ok(Delegate::from(&self.inner))
    }
    /// Counting changes no answer: the dicts on one counting handle share their delta
    /// fetches as they would without it, and the counts show the fetches the store saw.
    fn shares_fetches(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBackend;

    #[test]
    fn the_fields_follow_the_methods() {
        assert_eq!(CallCounts::FIELDS, Call::METHODS);
    }

    #[tokio::test]
    async fn each_call_is_counted_under_its_method() {
        let counting = CountingBackend::new(Arc::new(MemoryBackend::new("instrument-test")));
        counting.persist("k", bytes::Bytes::from_static(b"1")).await.unwrap();
        counting.last_updated().await.unwrap();
        counting.last_updated().await.unwrap();
        let counts = counting.counts();
        assert_eq!((counts.persist, counts.last_updated, counts.total()), (1, 2, 3));
    }
}
