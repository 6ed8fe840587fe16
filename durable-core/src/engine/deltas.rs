//! One delta fetch per change for all the dicts of a process on one store and namespace.
//!
//! A change hint reaches every dict of a process at once (one shared subscription per
//! process), and each dict would then ask the store for the same delta: a thousand dicts, a
//! thousand round trips per change. Dicts whose handles give the same
//! [`Backend::fetch_scope`] instead share [`Deltas`]: the first dict to ask fetches (the
//! leader), and a dict asking while that fetch runs waits for its answer instead of asking
//! the store too.
//!
//! A shared answer must be as good as the dict's own would have been:
//! - it must start at or below the dict's version (a delta from an earlier version holds
//!   every key changed since the dict's version too, each at its latest state; keys the
//!   dict already has at that state are recognized by their raw hash and change nothing);
//! - it must reach the version the dict knows the store to be at — the hint's, or the one
//!   it just read, or the one its own write created (read-your-writes). An answer short of
//!   that is not used: the dict fetches again.
//!
//! The last answer stays for a moment after it lands ([`KEPT_FOR`]): the dicts a hint wakes
//! do not all ask while the first one's fetch runs — on two cores a hundred of them wake
//! over a few milliseconds, longer than a fetch takes — and one asking just after it landed
//! takes it on the same terms instead of fetching again. Only a delta of up to [`KEPT_MAX`]
//! changes is kept (a bulk change's answer is not held on to).
//!
//! A dict that does not know a version to reach (a hint without a version) fetches on its
//! own. An error is shared like an answer (the store is failing for everyone); a leader
//! that goes away without an answer (its caller was cancelled) leaves the others to fetch.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::backend::{Backend, Changes, Version};
use crate::error::Result;

/// How long a landed answer is offered to the dicts that ask after it (see the module docs).
const KEPT_FOR: Duration = Duration::from_millis(250);
/// The most changes a kept answer holds.
const KEPT_MAX: usize = 1_024;

/// The shared fetches of one scope; see the module docs.
#[derive(Default)]
pub(crate) struct Deltas {
    running: Mutex<Option<Flight>>,
    /// The last delta a fetch brought, while it is fresh: where it started, when it landed.
    kept: Mutex<Option<Kept>>,
}

struct Kept {
    from: Version,
    at: Instant,
    answer: Answer,
}

/// A fetch under way: from which version, and where its answer will be.
struct Flight {
    id: u64,
    from: Version,
    answer: watch::Receiver<Option<Answer>>,
}

type Answer = Arc<Result<Changes>>;

static SCOPES: LazyLock<Mutex<HashMap<String, Weak<Deltas>>>> = LazyLock::new(Default::default);
static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Deltas {
    /// The process's shared fetches for `backend`'s scope, if it has one.
    pub(crate) fn for_backend(backend: &dyn Backend) -> Option<Arc<Self>> {
        let scope = backend.fetch_scope()?;
        let mut scopes = SCOPES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        scopes.retain(|_, deltas| deltas.strong_count() > 0);
        if let Some(deltas) = scopes.get(&scope).and_then(Weak::upgrade) {
            return Some(deltas);
        }
        let deltas = Arc::new(Self::default());
        scopes.insert(scope, Arc::downgrade(&deltas));
        Some(deltas)
    }

    /// The changes after `since`, reaching `target` at least, fetched through `store` or
    /// taken from a fetch under way (see the module docs).
    pub(crate) async fn changes_since(&self, store: &dyn Backend, since: Version, target: Version) -> Result<Changes> {
        if let Some(kept) = self.kept_for(since, target) {
            return Ok(kept);
        }
        loop {
            let joined = {
                let running = self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                running.as_ref().filter(|flight| flight.from <= since).map(|flight| flight.answer.clone())
            };
            let Some(mut answer) = joined else {
                return self.lead(store, since).await;
            };
            // The leader sends once; a closed channel without an answer means it went away.
            let landed = match answer.wait_for(Option::is_some).await {
                Ok(landed) => landed.clone(),
                Err(_) => None,
            };
            match landed.as_deref() {
                Some(Ok(Changes::Delta { changes, version })) if *version >= target => {
                    return Ok(Changes::Delta { changes: changes.clone(), version: *version });
                }
                Some(Ok(Changes::TooOld)) => return Ok(Changes::TooOld),
                Some(Err(err)) => return Err(err.clone()),
                // Short of the target, or no answer: fetch again (or join a newer fetch).
                Some(Ok(Changes::Delta { .. })) | None => tokio::task::yield_now().await,
            }
        }
    }

    /// The kept answer, when it is fresh, starts at or below `since` and reaches `target`.
    fn kept_for(&self, since: Version, target: Version) -> Option<Changes> {
        let kept = self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let kept = kept.as_ref().filter(|kept| kept.from <= since && kept.at.elapsed() < KEPT_FOR)?;
        match &*kept.answer {
            Ok(Changes::Delta { changes, version }) if *version >= target => {
                Some(Changes::Delta { changes: changes.clone(), version: *version })
            }
            _ => None,
        }
    }

    /// Keeps a landed delta for those who ask next, unless the kept one serves more (it
    /// reaches further, or as far from an earlier start).
    fn keep(&self, from: Version, answer: &Answer) {
        let Ok(Changes::Delta { changes, version }) = &**answer else { return };
        if changes.len() > KEPT_MAX {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let better = match kept.as_ref().filter(|kept| kept.at.elapsed() < KEPT_FOR) {
            Some(Kept { from: kept_from, answer: kept_answer, .. }) => match &**kept_answer {
                Ok(Changes::Delta { version: kept_version, .. }) => {
                    version > kept_version || (version == kept_version && from < *kept_from)
                }
                _ => true,
            },
            None => true,
        };
        if better {
            *kept = Some(Kept { from, at: Instant::now(), answer: Arc::clone(answer) });
        }
    }

    /// Fetches from `since` for everyone who joins meanwhile.
    async fn lead(&self, store: &dyn Backend, since: Version) -> Result<Changes> {
        let (tell, answer) = watch::channel(None);
        let id = IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        {
            let mut running = self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // A fetch already under way from a later version: this one takes its place for
            // newcomers (it serves them all); the other's joiners still get its answer.
            *running = Some(Flight { id, from: since, answer });
        }
        // Whatever happens — an answer, an error, this future dropped — the flight ends.
        let _landed = Landed { deltas: self, id };
        let result = store.changes_since(since).await;
        let answer = Arc::new(result.clone());
        self.keep(since, &answer);
        let _ = tell.send(Some(answer));
        result
    }
}

/// Clears the flight `id` when its leader is done (or dropped).
struct Landed<'a> {
    deltas: &'a Deltas,
    id: u64,
}

impl Drop for Landed<'_> {
    fn drop(&mut self) {
        let mut running = self.deltas.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if running.as_ref().is_some_and(|flight| flight.id == self.id) {
            *running = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use bytes::Bytes;
    use tokio::sync::Semaphore;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::wrap::{Call, Delegate, Wrap};
    use crate::{MemoryBackend, MemoryStore};

    /// A memory store whose delta fetches wait for a permit, counted.
    struct Gated {
        inner: Arc<dyn Backend>,
        gate: Semaphore,
        fetches: AtomicUsize,
    }

    #[async_trait]
    impl Wrap for Gated {
        fn label(&self) -> &'static str {
            "gated"
        }
        fn wrapped(&self) -> Option<Delegate<'_>> {
            Some(Delegate::from(&self.inner))
        }
        async fn enter(&self, call: Call<'_>) -> Result<Delegate<'_>> {
            if let Call::ChangesSince { .. } = call {
                self.fetches.fetch_add(1, Ordering::SeqCst);
                self.gate.acquire().await.expect("open").forget();
            }
            Ok(Delegate::from(&self.inner))
        }
    }

    fn gated() -> Arc<Gated> {
        let inner: Arc<dyn Backend> = Arc::new(MemoryBackend::in_store(MemoryStore::new(), "deltas"));
        Arc::new(Gated { inner, gate: Semaphore::new(0), fetches: AtomicUsize::new(0) })
    }

    /// Asks `deltas` for the changes after `since` reaching `target`, on a task of its own.
    fn ask(deltas: &Arc<Deltas>, store: &Arc<Gated>, since: Version, target: Version) -> JoinHandle<Changes> {
        let (deltas, store) = (Arc::clone(deltas), Arc::clone(store));
        tokio::spawn(async move { deltas.changes_since(&*store, since, target).await.unwrap() })
    }

    async fn fetches_reach(store: &Gated, n: usize) {
        while store.fetches.load(Ordering::SeqCst) < n {
            tokio::task::yield_now().await;
        }
    }

    fn version_of(changes: &Changes) -> Option<Version> {
        match changes {
            Changes::Delta { version, .. } => Some(*version),
            Changes::TooOld => None,
        }
    }

    /// Callers asking while a fetch runs take its answer when it reaches their target; a
    /// caller whose target it falls short of fetches again; a caller behind the running
    /// fetch's start fetches on its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_share_a_running_fetch_that_reaches_their_target() {
        let store = gated();
        store.inner.persist("a", Bytes::from_static(b"1")).await.unwrap();
        store.inner.persist("b", Bytes::from_static(b"2")).await.unwrap();
        let deltas = Arc::new(Deltas::default());
        let leader = ask(&deltas, &store, 0, 2);
        fetches_reach(&store, 1).await;
        let followers: Vec<_> = (0..5).map(|_| ask(&deltas, &store, 1, 2)).collect();
        // A target beyond what the store holds: the shared answer (version 2) falls short.
        let beyond = ask(&deltas, &store, 1, 3);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(store.fetches.load(Ordering::SeqCst), 1, "the others wait for the running fetch");
        store.gate.add_permits(1);
        assert_eq!(version_of(&leader.await.unwrap()), Some(2));
        for follower in followers {
            let Changes::Delta { changes, version } = follower.await.unwrap() else { panic!("a delta") };
            // The leader's delta from 0 holds both keys; the follower at 1 applies it as is.
            assert_eq!((version, changes.len()), (2, 2));
        }
        fetches_reach(&store, 2).await;
        store.gate.add_permits(1);
        assert_eq!(version_of(&beyond.await.unwrap()), Some(2), "its own fetch, answered as the store is");
        assert_eq!(store.fetches.load(Ordering::SeqCst), 2);
        assert!(deltas.running.lock().unwrap().is_none(), "no fetch left registered");
    }

    /// A caller at a version below the running fetch's start cannot use its answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_behind_the_running_fetch_fetches_on_its_own() {
        let store = gated();
        store.inner.persist("a", Bytes::from_static(b"1")).await.unwrap();
        store.inner.persist("b", Bytes::from_static(b"2")).await.unwrap();
        let deltas = Arc::new(Deltas::default());
        let ahead = ask(&deltas, &store, 1, 2);
        fetches_reach(&store, 1).await;
        let behind = ask(&deltas, &store, 0, 2);
        fetches_reach(&store, 2).await;
        store.gate.add_permits(2);
        let Changes::Delta { changes, .. } = behind.await.unwrap() else { panic!("a delta") };
        assert_eq!(changes.len(), 2, "both keys changed after 0");
        let Changes::Delta { changes, .. } = ahead.await.unwrap() else { panic!("a delta") };
        assert_eq!(changes.len(), 1);
    }

    /// A caller asking just after a fetch landed takes its answer on the same terms as a
    /// running one's (from at or below its version, reaching its target), without a fetch;
    /// one it does not serve, or one asking once the answer is no longer fresh, fetches.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_just_landed_serves_the_callers_after_it() {
        let store = gated();
        store.gate.add_permits(100);
        store.inner.persist("a", Bytes::from_static(b"1")).await.unwrap();
        store.inner.persist("b", Bytes::from_static(b"2")).await.unwrap();
        let deltas = Arc::new(Deltas::default());
        assert_eq!(version_of(&ask(&deltas, &store, 1, 2).await.unwrap()), Some(2));
        assert_eq!(store.fetches.load(Ordering::SeqCst), 1);
        for since in [1, 2] {
            let Changes::Delta { changes, version } = ask(&deltas, &store, since, 2).await.unwrap() else {
                panic!("a delta")
            };
            assert_eq!((version, changes.len()), (2, 1), "the kept delta from 1: only b");
        }
        assert_eq!(store.fetches.load(Ordering::SeqCst), 1, "served by the kept answer");
        // Behind its start: a fetch of its own, which is then kept as the better answer.
        let Changes::Delta { changes, .. } = ask(&deltas, &store, 0, 2).await.unwrap() else { panic!("a delta") };
        assert_eq!((changes.len(), store.fetches.load(Ordering::SeqCst)), (2, 2));
        // A target past it: a fetch, which sees the store's new write.
        store.inner.persist("c", Bytes::from_static(b"3")).await.unwrap();
        assert_eq!(version_of(&ask(&deltas, &store, 0, 3).await.unwrap()), Some(3));
        assert_eq!(store.fetches.load(Ordering::SeqCst), 3);
        tokio::time::sleep(KEPT_FOR + Duration::from_millis(20)).await;
        assert_eq!(version_of(&ask(&deltas, &store, 2, 3).await.unwrap()), Some(3));
        assert_eq!(store.fetches.load(Ordering::SeqCst), 4, "no longer fresh: fetched");
    }

    /// A leader dropped before its answer leaves the waiting callers to fetch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_leader_leaves_the_others_to_fetch() {
        let store = gated();
        store.inner.persist("a", Bytes::from_static(b"1")).await.unwrap();
        let deltas = Arc::new(Deltas::default());
        let leader = ask(&deltas, &store, 0, 1);
        fetches_reach(&store, 1).await;
        let follower = ask(&deltas, &store, 0, 1);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        leader.abort();
        fetches_reach(&store, 2).await;
        store.gate.add_permits(1);
        assert_eq!(version_of(&follower.await.unwrap()), Some(1));
    }
}
