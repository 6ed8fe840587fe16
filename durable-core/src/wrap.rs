//! [`Wrap`]: the one way a wrapper around a [`Backend`] is written; see its docs.

use std::ops::Deref;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::{Backend, Changes, Durables, HintStream, Version, default_key_rule};
use crate::batch::Batch;
use crate::error::Result;
use crate::journal::{JournalPage, JournalRecord};
use crate::lease::{LeaseAnswer, LeaseOp};

/// A call about to go through a wrapper, with what it carries — enough to count it, time
/// it, fail it, or check its keys and values against the backend it will reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Call<'a> {
    /// [`Backend::persist`].
    Persist {
        /// The key.
        key: &'a str,
        /// The encoded value.
        value: &'a [u8],
    },
    /// [`Backend::depersist`].
    Depersist {
        /// The key.
        key: &'a str,
    },
    /// [`Backend::durables`].
    Durables,
    /// [`Backend::last_updated`].
    LastUpdated,
    /// [`Backend::apply`].
    Apply {
        /// The batch.
        batch: &'a Batch,
    },
    /// [`Backend::pop`].
    Pop {
        /// The key.
        key: &'a str,
    },
    /// [`Backend::setdefault`].
    Setdefault {
        /// The key.
        key: &'a str,
        /// The encoded value stored when the key is absent.
        value: &'a [u8],
    },
    /// [`Backend::changes_since`].
    ChangesSince {
        /// The version the delta starts after.
        since: Version,
    },
    /// [`Backend::watch`].
    Watch,
    /// [`Backend::compare_and_swap`].
    CompareAndSwap {
        /// The key.
        key: &'a str,
        /// The value expected (`None`: absent).
        expected: Option<&'a [u8]>,
        /// The value to store (`None`: delete).
        new: Option<&'a [u8]>,
    },
    /// [`Backend::journal`].
    Journal {
        /// The version the page starts after.
        after: Version,
    },
    /// [`Backend::history`].
    History {
        /// The key.
        key: &'a str,
    },
    /// [`Backend::lease`].
    Lease {
        /// The key.
        key: &'a str,
        /// What is asked.
        op: LeaseOp,
    },
    /// [`Backend::remove_namespace`].
    RemoveNamespace,
}

impl Call<'_> {
    /// Every method, in declaration order: [`Call::index`] is a position in it.
    pub const METHODS: [&'static str; 14] = [
        "persist",
        "depersist",
        "durables",
        "last_updated",
        "apply",
        "pop",
        "setdefault",
        "changes_since",
        "watch",
        "compare_and_swap",
        "journal",
        "history",
        "lease",
        "remove_namespace",
    ];

    /// The method's position in [`Call::METHODS`].
    pub fn index(&self) -> usize {
        match self {
            Call::Persist { .. } => 0,
            Call::Depersist { .. } => 1,
            Call::Durables => 2,
            Call::LastUpdated => 3,
            Call::Apply { .. } => 4,
            Call::Pop { .. } => 5,
            Call::Setdefault { .. } => 6,
            Call::ChangesSince { .. } => 7,
            Call::Watch => 8,
            Call::CompareAndSwap { .. } => 9,
            Call::Journal { .. } => 10,
            Call::History { .. } => 11,
            Call::Lease { .. } => 12,
            Call::RemoveNamespace => 13,
        }
    }

    /// The method's name, as in [`Backend`].
    pub fn method(&self) -> &'static str {
        Self::METHODS[self.index()]
    }

    /// Whether the call may change the store.
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Call::Durables
                | Call::LastUpdated
                | Call::ChangesSince { .. }
                | Call::Watch
                | Call::Journal { .. }
                | Call::History { .. }
        )
    }

    /// The values the call would store, with their keys (none for reads and deletes).
    pub fn values(&self) -> Vec<(&str, &[u8])> {
        match *self {
            Call::Persist { key, value } | Call::Setdefault { key, value } => vec![(key, value)],
            Call::CompareAndSwap { key, new: Some(value), .. } => vec![(key, value)],
            Call::Apply { batch } => batch.puts_iter().map(|(key, value)| (key, value.as_ref())).collect(),
            _ => Vec::new(),
        }
    }
}

/// The backend a call goes on to: borrowed from the wrapper, or shared (a wrapper that
/// switches backends hands out the one current at the call).
pub enum Delegate<'a> {
    /// A backend the wrapper holds.
    Borrowed(&'a dyn Backend),
    /// A backend the wrapper handed out for this call.
    Shared(Arc<dyn Backend>),
}

impl Deref for Delegate<'_> {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        match self {
            Delegate::Borrowed(backend) => *backend,
            Delegate::Shared(backend) => &**backend,
        }
    }
}

impl<'a> From<&'a dyn Backend> for Delegate<'a> {
    fn from(backend: &'a dyn Backend) -> Self {
        Delegate::Borrowed(backend)
    }
}

impl<'a> From<&'a Arc<dyn Backend>> for Delegate<'a> {
    fn from(backend: &'a Arc<dyn Backend>) -> Self {
        Delegate::Borrowed(&**backend)
    }
}

impl From<Arc<dyn Backend>> for Delegate<'_> {
    fn from(backend: Arc<dyn Backend>) -> Self {
        Delegate::Shared(backend)
    }
}

/// A wrapper around a backend. Implement this, not [`Backend`]: the blanket implementation
/// forwards every `Backend` method through [`Wrap::enter`] to the backend it returns, so
/// the wrapper keeps every guarantee of what it wraps — atomic `pop`, `setdefault`,
/// `compare_and_swap` and `persist_many`, deltas, hints, key rules and size limit.
///
/// A wrapper says what it does before a call ([`Wrap::enter`]) and to the hint stream
/// ([`Wrap::wrap_hints`]), and nothing else: it cannot forget a method, so it cannot fall
/// back to a weaker default by accident (invariant 14).
///
/// ```
/// use durable_core::{Backend, Call, Delegate, MemoryBackend, Result, Wrap, async_trait};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// /// Counts the writes that reach the store.
/// struct CountWrites<B> {
///     inner: B,
///     writes: AtomicU64,
/// }
///
/// #[async_trait]
/// impl<B: Backend> Wrap for CountWrites<B> {
///     fn label(&self) -> &'static str {
///         "count-writes"
///     }
///     fn wrapped(&self) -> Option<Delegate<'_>> {
///         Some(Delegate::from(&self.inner as &dyn Backend))
///     }
///     async fn enter(&self, call: Call<'_>) -> Result<Delegate<'_>> {
///         if call.is_write() {
///             self.writes.fetch_add(1, Ordering::Relaxed);
///         }
///         Ok(Delegate::from(&self.inner as &dyn Backend))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<()> {
/// let counted = CountWrites { inner: MemoryBackend::new("flags"), writes: AtomicU64::new(0) };
/// counted.persist("k", "1".into()).await?;
/// counted.last_updated().await?;
/// assert_eq!(counted.writes.load(Ordering::Relaxed), 1);
/// assert_eq!(counted.describe(), "count-writes(memory)");
/// // Everything else is the wrapped backend's: its atomic pop, its deltas, its hints.
/// assert!(counted.watch().await?.is_some());
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Wrap: Send + Sync + 'static {
    /// What the wrapper adds to the wrapped backend's description: `counting` makes
    /// [`Backend::describe`] say `counting(redis)`. Empty for a wrapper that adds nothing
    /// worth naming (a shared pointer).
    fn label(&self) -> &'static str;

    /// The wrapped backend as it is now, without I/O, for [`Backend::name`], key rules and
    /// the size limit; `None` while there is none yet (a lazy wrapper before it connects).
    fn wrapped(&self) -> Option<Delegate<'_>>;

    /// Runs before every call and returns the backend that serves it: the place to count,
    /// delay, fail, connect or check what the call carries.
    async fn enter(&self, call: Call<'_>) -> Result<Delegate<'_>>;

    /// Whether every read through this wrapper returns what the wrapped backend returned
    /// (it only counts, times or logs), so that dicts on handles through wrappers of this
    /// kind may share their delta fetches ([`Backend::fetch_scope`]: the wrapped scope
    /// under this wrapper's label). Default `false`: a wrapper that may fail, delay or
    /// change a read shares nothing.
    fn shares_fetches(&self) -> bool {
        false
    }

    /// The wrapped backend's hint stream as this wrapper hands it on (default: unchanged).
    fn wrap_hints(&self, hints: HintStream) -> HintStream {
        hints
    }

    /// What [`Backend::name`] says while [`Wrap::wrapped`] is `None`.
    fn unwrapped_name(&self) -> &'static str {
        "unconnected"
    }
}

#[async_trait]
impl<W: Wrap> Backend for W {
    fn name(&self) -> &'static str {
        self.wrapped().map_or_else(|| self.unwrapped_name(), |inner| inner.name())
    }
    fn describe(&self) -> String {
        let inner = self.wrapped().map_or_else(|| self.unwrapped_name().to_owned(), |inner| inner.describe());
        match self.label() {
            "" => inner,
            label => format!("{label}({inner})"),
        }
    }
    fn validate_key(&self, key: &str) -> Result<()> {
        match self.wrapped() {
            Some(inner) => inner.validate_key(key),
            None => default_key_rule(key),
        }
    }
    fn max_value_size(&self) -> Option<usize> {
        self.wrapped().and_then(|inner| inner.max_value_size())
    }
    fn fetch_scope(&self) -> Option<String> {
        let inner = self.wrapped().filter(|_| self.shares_fetches())?.fetch_scope()?;
        Some(match self.label() {
            "" => inner,
            label => format!("{label}({inner})"),
        })
    }
    async fn persist(&self, key: &str, value: Bytes) -> Result<Version> {
        self.enter(Call::Persist { key, value: &value }).await?.persist(key, value).await
    }
    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        self.enter(Call::Depersist { key }).await?.depersist(key).await
    }
    async fn durables(&self) -> Result<Durables> {
        self.enter(Call::Durables).await?.durables().await
    }
    async fn last_updated(&self) -> Result<Version> {
        self.enter(Call::LastUpdated).await?.last_updated().await
    }
    async fn apply(&self, batch: Batch) -> Result<Option<Version>> {
        self.enter(Call::Apply { batch: &batch }).await?.apply(batch).await
    }
    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        self.enter(Call::Pop { key }).await?.pop(key).await
    }
    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)> {
        self.enter(Call::Setdefault { key, value: &value }).await?.setdefault(key, value).await
    }
    async fn changes_since(&self, since: Version) -> Result<Changes> {
        self.enter(Call::ChangesSince { since }).await?.changes_since(since).await
    }
    async fn watch(&self) -> Result<Option<HintStream>> {
        let hints = self.enter(Call::Watch).await?.watch().await?;
        Ok(hints.map(|hints| self.wrap_hints(hints)))
    }
    async fn compare_and_swap(&self, key: &str, old: Option<Bytes>, new: Option<Bytes>) -> Result<Option<Version>> {
        let call = Call::CompareAndSwap { key, expected: old.as_deref(), new: new.as_deref() };
        self.enter(call).await?.compare_and_swap(key, old, new).await
    }
    async fn journal(&self, after: Version, limit: usize) -> Result<JournalPage> {
        self.enter(Call::Journal { after }).await?.journal(after, limit).await
    }
    async fn history(&self, key: &str, limit: usize) -> Result<Vec<JournalRecord>> {
        self.enter(Call::History { key }).await?.history(key, limit).await
    }
    async fn lease(&self, key: &str, op: LeaseOp) -> Result<LeaseAnswer> {
        self.enter(Call::Lease { key, op }).await?.lease(key, op).await
    }
    async fn remove_namespace(&self) -> Result<()> {
        self.enter(Call::RemoveNamespace).await?.remove_namespace().await
    }
}

/// A shared backend is a backend: the dict and the facade pass `Arc<dyn Backend>` around.
#[async_trait]
impl Wrap for Arc<dyn Backend> {
    fn label(&self) -> &'static str {
        ""
    }
    fn wrapped(&self) -> Option<Delegate<'_>> {
        Some(Delegate::from(self))
    }
    async fn enter(&self, _call: Call<'_>) -> Result<Delegate<'_>> {
        Ok(Delegate::from(self))
    }
    fn shares_fetches(&self) -> bool {
        true
    }
}

/// `Arc<RedisBackend>` and the like are backends too.
#[async_trait]
impl<B: Backend> Wrap for Arc<B> {
    fn label(&self) -> &'static str {
        ""
    }
    fn wrapped(&self) -> Option<Delegate<'_>> {
        Some(Delegate::Borrowed(&**self))
    }
    async fn enter(&self, _call: Call<'_>) -> Result<Delegate<'_>> {
        Ok(Delegate::Borrowed(&**self))
    }
    fn shares_fetches(&self) -> bool {
        true
    }
}
