//! [`Builder`]: a dict's options, and `build()`, which starts its engine.

use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::codec::{Codec, Json};
use crate::dict::DurableDict;
use crate::engine::Engine;
use crate::error::Result;
use crate::read_only::ReadOnlyBackend;

/// Builds a [`DurableDict`]: `DurableDict::<V>::builder(backend)...build().await`.
pub struct Builder<V, C> {
    options: Options,
    codec: C,
    value: PhantomData<fn() -> V>,
}

/// A dict's options but its codec: what [`Engine::start`] needs.
pub(crate) struct Options {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) autosync: bool,
    pub(crate) hints: bool,
    pub(crate) background_refresh: bool,
    pub(crate) poll_interval: Duration,
    pub(crate) event_capacity: usize,
    pub(crate) backup_file: Option<PathBuf>,
    pub(crate) read_only: bool,
    /// The dict's name in its metrics, when it records them.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<String>,
}

impl<V> Builder<V, Json> {
    /// The defaults: JSON, autosync, hints, no background refresh, a 5 s poll interval,
    /// 1024 events of slack, no backup file.
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Self {
        let options = Options {
            backend,
            autosync: true,
            hints: true,
            background_refresh: false,
            poll_interval: Duration::from_secs(5),
            event_capacity: 1024,
            backup_file: None,
            read_only: false,
            #[cfg(feature = "metrics")]
            metrics: None,
        };
        Self { options, codec: Json, value: PhantomData }
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> Builder<V, C> {
    /// The codec values are stored with (default [`Json`](crate::Json)).
    pub fn codec<C2: Codec<V>>(self, codec: C2) -> Builder<V, C2> {
        Builder { options: self.options, codec, value: PhantomData }
    }

    /// Refuse every write with [`Error::ReadOnly`](crate::Error::ReadOnly) before any I/O
    /// (default `false`): the backend is put behind a [`ReadOnlyBackend`](crate::ReadOnlyBackend).
    /// Sync, hints, deltas and the backup file work as before.
    pub fn read_only(mut self, on: bool) -> Self {
        self.options.read_only = on;
        self
    }

    /// Sync before every read (default `true`, as in durabledict). Turn off to read the
    /// snapshot as it is and call `sync()` yourself, e.g. once per request.
    pub fn autosync(mut self, on: bool) -> Self {
        self.options.autosync = on;
        self
    }

    /// Listen to the backend's change hints (default `true`), which makes `sync()` free
    /// until something changes. Off: every `sync()` asks the store.
    pub fn hints(mut self, on: bool) -> Self {
        self.options.hints = on;
        self
    }

    /// Apply changes in a background task as soon as a hint arrives, and check the store
    /// every poll interval whatever the hints say (default `false`).
    pub fn background_refresh(mut self, on: bool) -> Self {
        self.options.background_refresh = on;
        self
    }

    /// How often background refresh checks the store even without hints (default 5 s). It
    /// is the only source of freshness for backends that push no hints.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.options.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How many change events a subscriber may fall behind before it is told it lagged
    /// (default 1024).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.options.event_capacity = capacity;
        self
    }

    /// Keeps the last snapshot in a local file (default: none), so the service can start
    /// when the store cannot be reached: see the [`BackupError`](crate::BackupError) module
    /// docs for the format.
    ///
    /// - After every change to the snapshot, a background task writes it to `path`
    ///   atomically and durably (a temporary file beside it, synced, renamed over `path`, then
    ///   the directory synced: a crash leaves the old whole file or the new one).
    /// - When the first load fails at [`Builder::build`], the dict starts from the file
    ///   instead, with [`Status::from_backup`](crate::Status::from_backup) set and the
    ///   failure in `status()`; it retries the store on its own (50 ms, doubling to 250 ms)
    ///   and replaces the whole snapshot with a full reload once the store answers.
    /// - A missing, truncated, corrupt or undecodable file is ignored with a warning, and
    ///   `build()` fails with the store's error as it would without a backup.
    ///
    /// Give each dict (each namespace) its own file.
    pub fn backup_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.options.backup_file = Some(path.into());
        self
    }

    /// Records the dict's metrics under the label `dict="<name>"` (feature `metrics`; see
    /// [`crate::metrics`]): sync latency by outcome, store requests and errors by
    /// operation, write latency, conflicts, the snapshot's version and size, staleness,
    /// the hint listener. The application installs the recorder (a Prometheus exporter,
    /// say); without one each update costs a check of the facade.
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, name: &str) -> Self {
        self.options.metrics = Some(name.to_owned());
        self
    }

    /// Subscribes to hints (when on), loads the whole namespace, and starts the background
    /// task. Fails when the first load fails — unless a [backup file](Builder::backup_file)
    /// can stand in: a dict never starts out empty by accident.
    pub async fn build(mut self) -> Result<DurableDict<V, C>> {
        #[cfg(feature = "metrics")]
        if let Some(name) = &self.options.metrics {
            self.options.backend = Arc::new(crate::metrics::MetricsBackend::new(self.options.backend, name));
        }
        if self.options.read_only {
            self.options.backend = Arc::new(ReadOnlyBackend::new(self.options.backend));
        }
        Ok(DurableDict { engine: Engine::start(self.options, self.codec).await? })
    }
}
