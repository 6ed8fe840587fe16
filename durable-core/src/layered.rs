//! Layered views: several sources of values for one set of keys, first hit wins per key —
//! *environment > overrides file > the store > code defaults*, or any order of them.
//!
//! ```
//! # use std::sync::Arc;
//! # use durable_core::{DurableDict, Layered, MemoryBackend};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> durable_core::Result<()> {
//! let store = DurableDict::<bool>::builder(Arc::new(MemoryBackend::new("flags"))).build().await?;
//! store.insert("new-checkout", true).await?;
//! let flags = Layered::builder()
//!     .env("MYAPP_FLAG_")              // MYAPP_FLAG_new-checkout=false wins over everything
//!     .file("/etc/myapp/flags.toml")   // then a local file (JSON or TOML; may be absent)
//!     .dict("store", store)            // then the shared store
//!     .defaults([("new-checkout", false), ("beta", false)]) // then the code's defaults
//!     .build()?;
//! let snapshot = flags.layered_snapshot();
//! assert_eq!(snapshot.get("new-checkout"), Some(&true));
//! assert_eq!(snapshot.layer_of("beta"), Some("defaults"));
//! # Ok(()) }
//! ```
//!
//! - **Reads** go through one merged [`Snapshot`], the same kind a dict hands out: a `get`
//!   is one hash lookup whatever the number of layers. The merge is made again when a layer
//!   changes, starting from the largest layer (shared, not copied: the map is persistent)
//!   and putting in the others' keys, so its cost is the size of the *other* layers —
//!   overrides and defaults are small.
//! - [`LayeredSnapshot`] also says which layer answered a key ([`LayeredSnapshot::layer_of`])
//!   and the version of every layer ([`LayeredSnapshot::versions`]): a dict's version, the
//!   number of times a file was loaded, 0 for fixed layers.
//! - [`Layered::sync`] syncs every dict layer and looks at every file (one `stat`; a file
//!   whose time or size changed is read again). A file that cannot be read as values keeps
//!   its last good content ([`Layered::override_errors`] says why); a missing file is an
//!   empty layer.
//! - [`Layered::subscribe`] gives change events of the **effective** values: a key's event
//!   fires when what the view answers for it changes — a store change under an override
//!   fires nothing, removing the override fires one.
//! - Environment layers take every variable `PREFIX<key>` (the key verbatim after the
//!   prefix: `MYAPP_FLAG_beta`, or `MYAPP_FLAG_new-checkout` as orchestrators and `env`
//!   can set) whose value is JSON; a value that is not JSON is taken as a string. They are
//!   read once, at [`LayeredBuilder::build`].

use std::collections::HashMap as StdHashMap;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use futures::FutureExt;
use serde::de::DeserializeOwned;

use crate::backend::Version;
use crate::codec::{Codec, Json};
use crate::dict::DurableDict;
use crate::error::{Error, Result};
use crate::events::{Change, Event, Subscription};
use crate::snapshot::{Entry, Snapshot, SnapshotData};

type Map<V> = crate::entry_map::EntryMap<V>;
/// A key a file's reload changed: its old and new value.
type Changed<V> = (Arc<str>, Option<Arc<V>>, Option<Arc<V>>);
type Decode<V> = Arc<dyn Fn(serde_json::Value) -> std::result::Result<V, String> + Send + Sync>;

/// How many events a slow subscriber may fall behind before it gets [`Event::Lagged`].
const EVENTS: usize = 1024;

/// A view over an ordered list of layers, first hit wins per key; see the module docs.
pub struct Layered<V, C = Json> {
    inner: Arc<Inner<V, C>>,
}

impl<V, C> Clone for Layered<V, C> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

struct Inner<V, C> {
    sources: Vec<Source<V, C>>,
    names: Arc<[String]>,
    current: ArcSwap<LayeredSnapshot<V>>,
    /// Held while a merge is made, so that two callers do not make one twice.
    merging: Mutex<()>,
    events: crate::events::Channel<V>,
}

enum Source<V, C> {
    Dict { dict: DurableDict<V, C>, events: Mutex<Subscription<V>> },
    Fixed(Arc<Map<V>>),
    File(FileLayer<V>),
}

struct FileLayer<V> {
    path: PathBuf,
    decode: Decode<V>,
    state: Mutex<FileState<V>>,
}

struct FileState<V> {
    /// The file's modification time and size when it was last read (`None`: absent).
    stamp: Option<(SystemTime, u64)>,
    raw: StdHashMap<String, serde_json::Value>,
    map: Arc<Map<V>>,
    loads: Version,
    error: Option<Error>,
    /// Keys whose value the last reload changed, with the old and new value, for events.
    changed: Vec<Changed<V>>,
}

/// One layer as a snapshot holds it.
enum View<V> {
    Dict(Snapshot<V>),
    Map(Arc<Map<V>>, Version),
}

impl<V> Clone for View<V> {
    fn clone(&self) -> Self {
        match self {
            View::Dict(snapshot) => View::Dict(snapshot.clone()),
            View::Map(map, version) => View::Map(Arc::clone(map), *version),
        }
    }
}

impl<V> View<V> {
    fn entries(&self) -> &Map<V> {
        match self {
            View::Dict(snapshot) => &snapshot.data.entries,
            View::Map(map, _) => map,
        }
    }

    fn version(&self) -> Version {
        match self {
            View::Dict(snapshot) => snapshot.version(),
            View::Map(_, version) => *version,
        }
    }

    fn same(&self, other: &View<V>) -> bool {
        match (self, other) {
            (View::Dict(a), View::Dict(b)) => Arc::ptr_eq(&*a.data, &*b.data),
            (View::Map(a, _), View::Map(b, _)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// The layered view at one moment: a merged [`Snapshot`] (it dereferences to it: `get`,
/// `iter`, `keys`, `len`), which layer answers each key, and every layer's version.
pub struct LayeredSnapshot<V> {
    merged: Snapshot<V>,
    views: Arc<[View<V>]>,
    names: Arc<[String]>,
}

impl<V> Clone for LayeredSnapshot<V> {
    fn clone(&self) -> Self {
        Self { merged: self.merged.clone(), views: Arc::clone(&self.views), names: Arc::clone(&self.names) }
    }
}

impl<V> Deref for LayeredSnapshot<V> {
    type Target = Snapshot<V>;

    fn deref(&self) -> &Snapshot<V> {
        &self.merged
    }
}

impl<V> std::fmt::Debug for LayeredSnapshot<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayeredSnapshot").field("keys", &self.merged.len()).field("versions", &self.versions()).finish()
    }
}

impl<V> LayeredSnapshot<V> {
    /// The merged view as a plain snapshot (what `Flags<V>` and every reader of a dict take).
    /// Its [`version`](Snapshot::version) is the first dict layer's.
    pub fn snapshot(&self) -> &Snapshot<V> {
        &self.merged
    }

    /// The name of the layer that answers `key` (the first that has it).
    pub fn layer_of(&self, key: &str) -> Option<&str> {
        self.views.iter().position(|view| view.entries().contains_key(key)).map(|at| self.names[at].as_str())
    }

    /// The value at `key` and the layer it came from.
    pub fn get_with_layer(&self, key: &str) -> Option<(&V, &str)> {
        self.views
            .iter()
            .enumerate()
            .find_map(|(at, view)| view.entries().get(key).map(|entry| (&*entry.value, self.names[at].as_str())))
    }

    /// Every layer's name and version, in order: a dict's version, how many times a file
    /// was loaded, 0 for fixed layers. Two snapshots with equal versions hold equal values.
    pub fn versions(&self) -> Vec<(&str, Version)> {
        self.names.iter().map(String::as_str).zip(self.views.iter().map(View::version)).collect()
    }
}

/// Builds a [`Layered`] view: layers in the order they are added, the first the strongest.
pub struct LayeredBuilder<V, C = Json> {
    layers: Vec<(String, Pending<V, C>)>,
    error: Option<Error>,
}

enum Pending<V, C> {
    Dict(DurableDict<V, C>),
    Fixed(Map<V>),
    File(PathBuf, Decode<V>),
}

impl<V: Send + Sync + 'static> Layered<V, Json> {
    /// A builder; add layers strongest first.
    pub fn builder() -> LayeredBuilder<V, Json> {
        LayeredBuilder { layers: Vec::new(), error: None }
    }
}

impl<V: Send + Sync + 'static, C: Codec<V>> LayeredBuilder<V, C> {
    /// A builder for dicts of codec `C` (`Layered::builder()` is for JSON dicts).
    pub fn with_codec() -> Self {
        Self { layers: Vec::new(), error: None }
    }

    /// A dict, named `name` in [`LayeredSnapshot::layer_of`].
    pub fn dict(mut self, name: impl Into<String>, dict: DurableDict<V, C>) -> Self {
        self.layers.push((name.into(), Pending::Dict(dict)));
        self
    }

    /// Fixed values, named `defaults`: the code's defaults, usually the last layer.
    pub fn defaults<K: AsRef<str>>(self, values: impl IntoIterator<Item = (K, V)>) -> Self {
        self.fixed("defaults", values)
    }

    /// Fixed values under a name of their own.
    pub fn fixed<K: AsRef<str>>(mut self, name: impl Into<String>, values: impl IntoIterator<Item = (K, V)>) -> Self {
        let map = values.into_iter().map(|(key, value)| (Arc::from(key.as_ref()), entry(value))).collect();
        self.layers.push((name.into(), Pending::Fixed(map)));
        self
    }

    /// Makes the view: reads the files (a file that is there but cannot be read as values
    /// fails the build with [`Error::InvalidOverride`]) and merges the layers.
    pub fn build(self) -> Result<Layered<V, C>> {
        if let Some(err) = self.error {
            return Err(err);
        }
        let events = crate::events::Channel::new(EVENTS);
        let mut names = Vec::with_capacity(self.layers.len());
        let mut sources = Vec::with_capacity(self.layers.len());
        for (name, pending) in self.layers {
            names.push(name);
            sources.push(match pending {
                Pending::Dict(dict) => {
                    let events = Mutex::new(dict.subscribe());
                    Source::Dict { dict, events }
                }
                Pending::Fixed(mut map) => {
                    map.settle();
                    Source::Fixed(Arc::new(map))
                }
                Pending::File(path, decode) => {
                    let layer = FileLayer {
                        path,
                        decode,
                        state: Mutex::new(FileState {
                            stamp: None,
                            raw: StdHashMap::new(),
                            map: Arc::new(Map::new()),
                            loads: 0,
                            error: None,
                            changed: Vec::new(),
                        }),
                    };
                    layer.reload()?;
                    layer.state.lock().expect("the file layer").changed.clear();
                    Source::File(layer)
                }
            });
        }
        let names: Arc<[String]> = names.into();
        let views: Arc<[View<V>]> = sources.iter().map(Source::view).collect();
        let merged = merge(&views);
        let current = ArcSwap::from_pointee(LayeredSnapshot { merged, views, names: Arc::clone(&names) });
        Ok(Layered { inner: Arc::new(Inner { sources, names, current, merging: Mutex::new(()), events }) })
    }
}

impl<V: DeserializeOwned + Send + Sync + 'static, C: Codec<V>> LayeredBuilder<V, C> {
    /// Environment overrides, named `env`: every variable `prefix<key>` whose value is JSON
    /// (or else a string), read now.
    pub fn env(mut self, prefix: &str) -> Self {
        let mut map = Map::new();
        for (name, value) in std::env::vars_os() {
            let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else { continue };
            let Some(key) = name.strip_prefix(prefix).filter(|key| !key.is_empty()) else { continue };
            let json = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
            match serde_json::from_value::<V>(json) {
                Ok(value) => {
                    map.insert(Arc::from(key), entry(value));
                }
                Err(err) => {
                    let reason = format!("not a value of this view: {err}");
                    self.error.get_or_insert(Error::InvalidOverride { layer: format!("${name}"), reason });
                }
            }
        }
        self.layers.push(("env".into(), Pending::Fixed(map)));
        self
    }

    /// A local overrides file, named `file`: a JSON object, or a TOML table when the name
    /// ends in `.toml`, of keys and values; read at the build and again by every
    /// [`Layered::sync`] that finds its time or size changed. A missing file is empty.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        let decode: Decode<V> = Arc::new(|json| serde_json::from_value(json).map_err(|err| err.to_string()));
        self.layers.push(("file".into(), Pending::File(path.into(), decode)));
        self
    }
}

fn entry<V>(value: V) -> Entry<V> {
    Entry { value: Arc::new(value), raw_hash: 0 }
}

impl<V: Send + Sync + 'static, C: Codec<V>> Source<V, C> {
    fn view(&self) -> View<V> {
        match self {
            Source::Dict { dict, .. } => View::Dict(dict.snapshot()),
            Source::Fixed(map) => View::Map(Arc::clone(map), 0),
            Source::File(file) => {
                let state = file.state.lock().expect("the file layer");
                View::Map(Arc::clone(&state.map), state.loads)
            }
        }
    }
}

impl<V> FileLayer<V> {
    /// Reads the file again if its time or size changed; keeps the last good content (and
    /// records why) when it cannot be read as values. The build's first read returns that
    /// error instead.
    fn reload(&self) -> Result<()> {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|meta| (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len()));
        let mut state = self.state.lock().expect("the file layer");
        if state.loads > 0 && stamp == state.stamp {
            return Ok(());
        }
        let first = state.loads == 0;
        let read = match stamp {
            None => Ok(StdHashMap::new()),
            Some(_) => self.parse(),
        };
        let raw = match read.and_then(|raw| self.decode_all(raw)) {
            Ok(raw) => raw,
            Err(err) => {
                state.stamp = stamp;
                if first {
                    return Err(err);
                }
                tracing::error!(file = %self.path.display(), %err, "overrides file not loaded: its last good content stays");
                state.error = Some(err);
                return Ok(());
            }
        };
        let mut map = Map::new();
        let mut changed = Vec::new();
        for (key, (json, value)) in raw.iter() {
            let key: Arc<str> = Arc::from(key.as_str());
            let old = state.map.get(&key).map(|entry| Arc::clone(&entry.value));
            let kept = old.as_ref().filter(|_| state.raw.get(&*key) == Some(json));
            let value = kept.cloned().unwrap_or_else(|| Arc::clone(value));
            if kept.is_none() {
                changed.push((Arc::clone(&key), old, Some(Arc::clone(&value))));
            }
            map.insert(key, Entry { value, raw_hash: 0 });
        }
        for (key, entry) in state.map.iter() {
            if !raw.contains_key(&**key) {
                changed.push((Arc::clone(key), Some(Arc::clone(&entry.value)), None));
            }
        }
        state.raw = raw.into_iter().map(|(key, (json, _))| (key, json)).collect();
        map.settle();
        state.map = Arc::new(map);
        state.stamp = stamp;
        state.loads += 1;
        state.error = None;
        state.changed.extend(changed);
        Ok(())
    }

    fn parse(&self) -> Result<StdHashMap<String, serde_json::Value>> {
        let invalid = |reason: String| Error::InvalidOverride { layer: self.path.display().to_string(), reason };
        let text = std::fs::read_to_string(&self.path).map_err(|err| invalid(err.to_string()))?;
        let toml = self.path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("toml"));
        if toml {
            let table: toml::Table = toml::from_str(&text).map_err(|err| invalid(err.to_string()))?;
            table
                .into_iter()
                .map(|(key, value)| Ok((key, serde_json::to_value(value).map_err(|err| invalid(err.to_string()))?)))
                .collect()
        } else {
            serde_json::from_str(&text).map_err(|err| invalid(format!("not a JSON object of keys and values: {err}")))
        }
    }

    #[allow(clippy::type_complexity)]
    fn decode_all(
        &self,
        raw: StdHashMap<String, serde_json::Value>,
    ) -> Result<StdHashMap<String, (serde_json::Value, Arc<V>)>> {
        raw.into_iter()
            .map(|(key, json)| match (self.decode)(json.clone()) {
                Ok(value) => Ok((key, (json, Arc::new(value)))),
                Err(reason) => Err(Error::InvalidOverride {
                    layer: self.path.display().to_string(),
                    reason: format!("key {key}: not a value of this view: {reason}"),
                }),
            })
            .collect()
    }
}

/// The merged map: the largest layer shared, the others' keys put in where they win.
fn merge<V>(views: &[View<V>]) -> Snapshot<V> {
    let base = (0..views.len()).max_by_key(|at| views[*at].entries().len()).unwrap_or(0);
    let mut merged = views.get(base).map(|view| view.entries().clone()).unwrap_or_default();
    for view in views.iter().skip(base + 1) {
        for (key, entry) in view.entries().iter() {
            if !merged.contains_key(key) {
                merged.insert(Arc::clone(key), entry.clone());
            }
        }
    }
    for view in views[..base].iter().rev() {
        for (key, entry) in view.entries().iter() {
            merged.insert(Arc::clone(key), entry.clone());
        }
    }
    merged.settle();
    let first_dict = views.iter().find_map(|view| match view {
        View::Dict(snapshot) => Some(snapshot),
        View::Map(..) => None,
    });
    let data = SnapshotData {
        entries: merged,
        undecodable: first_dict.map(|snapshot| snapshot.data.undecodable.clone()).unwrap_or_default(),
        version: first_dict.map_or(0, Snapshot::version),
    };
    Snapshot::new(Arc::new(data))
}

impl<V: Send + Sync + 'static, C: Codec<V>> Layered<V, C> {
    /// The merged view now (made again first if a dict layer moved): a plain [`Snapshot`].
    pub fn snapshot(&self) -> Snapshot<V> {
        self.layered_snapshot().merged
    }

    /// The layered view now, made again first if a dict layer moved. Files are looked at by
    /// [`sync`](Self::sync) only.
    pub fn layered_snapshot(&self) -> LayeredSnapshot<V> {
        self.refresh(false)
    }

    /// Syncs every dict layer (all at once) and looks at every file, then merges. Every
    /// layer is brought as far as it goes; the first dict's error, if any, is returned (the
    /// view keeps serving what it had of that dict).
    pub async fn sync(&self) -> Result<()> {
        let syncs = self.inner.sources.iter().filter_map(|source| match source {
            Source::Dict { dict, .. } => Some(dict.sync()),
            _ => None,
        });
        let results = futures::future::join_all(syncs).await;
        self.refresh(true);
        results.into_iter().find_map(std::result::Result::err).map_or(Ok(()), Err)
    }

    /// The merged view when no dict layer needs a trip to its store (change hints healthy,
    /// nothing changed); `None` when [`sync`](Self::sync) should run first. Looks at the
    /// files (one `stat` each).
    pub fn fresh_snapshot(&self) -> Option<Snapshot<V>> {
        let quiet = self.inner.sources.iter().all(|source| match source {
            Source::Dict { dict, .. } => dict.fresh_snapshot().is_some(),
            _ => true,
        });
        quiet.then(|| self.refresh(true).merged)
    }

    /// How stale the view may be: the stalest dict layer's [`Status::staleness`](crate::Status::staleness).
    pub fn staleness(&self) -> Duration {
        self.inner
            .sources
            .iter()
            .filter_map(|source| match source {
                Source::Dict { dict, .. } => Some(dict.status().staleness()),
                _ => None,
            })
            .max()
            .unwrap_or_default()
    }

    /// Why an overrides file's latest content was not taken (it keeps its last good one).
    pub fn override_errors(&self) -> Vec<Error> {
        self.inner
            .sources
            .iter()
            .filter_map(|source| match source {
                Source::File(file) => file.state.lock().expect("the file layer").error.clone(),
                _ => None,
            })
            .collect()
    }

    /// The layers' names, strongest first.
    pub fn layer_names(&self) -> &[String] {
        &self.inner.names
    }

    /// Change events of the effective values (see the module docs). Events are made when
    /// the view is merged again: by [`sync`](Self::sync), [`snapshot`](Self::snapshot) and
    /// the other reads.
    pub fn subscribe(&self) -> Subscription<V> {
        Subscription::new(self.inner.events.subscribe(), None)
    }

    fn refresh(&self, look_at_files: bool) -> LayeredSnapshot<V> {
        if look_at_files {
            for source in &self.inner.sources {
                if let Source::File(file) = source {
                    // Errors were recorded; the layer keeps its last good content.
                    let _ = file.reload();
                }
            }
        }
        let current = self.inner.current.load_full();
        let views: Vec<View<V>> = self.inner.sources.iter().map(Source::view).collect();
        if views.iter().zip(current.views.iter()).all(|(now, then)| now.same(then)) {
            return (*current).clone();
        }
        let _merging = self.inner.merging.lock().expect("the merge lock");
        // Another caller may have merged meanwhile: take every layer as it is now.
        let before = self.inner.current.load_full();
        let views: Arc<[View<V>]> = self.inner.sources.iter().map(Source::view).collect();
        if views.iter().zip(before.views.iter()).all(|(now, then)| now.same(then)) {
            return (*before).clone();
        }
        let next = LayeredSnapshot { merged: merge(&views), views, names: Arc::clone(&self.inner.names) };
        self.inner.current.store(Arc::new(next.clone()));
        self.send_events(&next);
        next
    }

    /// The events of the layers' changes since the last merge, as the effective values see
    /// them: a change under a stronger layer that has the key fires nothing.
    fn send_events(&self, now: &LayeredSnapshot<V>) {
        let mut changes: Vec<(usize, Change<V>)> = Vec::new();
        for (at, source) in self.inner.sources.iter().enumerate() {
            match source {
                Source::Dict { events, .. } => {
                    let mut events = events.lock().expect("the dict's events");
                    while let Some(Some(event)) = events.recv().now_or_never() {
                        match event {
                            Event::Changed(change) => changes.push((at, change)),
                            other => {
                                self.inner.events.send(other);
                            }
                        }
                    }
                }
                Source::File(file) => {
                    let changed = std::mem::take(&mut file.state.lock().expect("the file layer").changed);
                    let version = now.views[at].version();
                    changes.extend(changed.into_iter().map(|(key, old, new)| (at, Change { key, old, new, version })));
                }
                Source::Fixed(_) => {}
            }
        }
        for (at, change) in changes {
            if now.views[..at].iter().any(|view| view.entries().contains_key(&change.key)) {
                continue; // masked by a stronger layer
            }
            let below = || {
                now.views[at + 1..]
                    .iter()
                    .find_map(|view| view.entries().get(&change.key).map(|e| Arc::clone(&e.value)))
            };
            let old = change.old.clone().or_else(below);
            let new = change.new.clone().or_else(below);
            let same = match (&old, &new) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
            if !same {
                self.inner.events.send(Event::Changed(Change { key: change.key, old, new, version: change.version }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;

    async fn dict(ns: &str) -> DurableDict<serde_json::Value> {
        DurableDict::builder(Arc::new(MemoryBackend::new(ns))).build().await.unwrap()
    }

    fn changed(event: Option<Event<serde_json::Value>>) -> (String, Option<serde_json::Value>) {
        match event {
            Some(Event::Changed(change)) => (change.key.to_string(), change.new.map(|v| (*v).clone())),
            other => panic!("want a change, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_first_layer_that_has_a_key_answers_and_says_so() {
        let store = dict("layered-first").await;
        store.insert("a", "store".into()).await.unwrap();
        store.insert("b", "store".into()).await.unwrap();
        let view = Layered::builder()
            .fixed("top", [("a", serde_json::json!("top"))])
            .dict("store", store.clone())
            .defaults([("b", serde_json::json!("default")), ("c", serde_json::json!("default"))])
            .build()
            .unwrap();
        let snapshot = view.layered_snapshot();
        assert_eq!(snapshot.get("a"), Some(&serde_json::json!("top")));
        assert_eq!(snapshot.get_with_layer("b"), Some((&serde_json::json!("store"), "store")));
        assert_eq!(snapshot.layer_of("c"), Some("defaults"));
        assert_eq!(snapshot.layer_of("d"), None);
        assert_eq!(snapshot.len(), 3);
        assert_eq!(snapshot.versions(), vec![("top", 0), ("store", 2), ("defaults", 0)]);
        assert_eq!(snapshot.snapshot().version(), 2);
    }

    #[tokio::test]
    async fn events_fire_when_the_effective_value_changes() {
        let store = dict("layered-events").await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("overrides.json");
        std::fs::write(&file, r#"{"masked": "file"}"#).unwrap();
        let view = Layered::builder()
            .file(&file)
            .dict("store", store.clone())
            .defaults([("fallback", serde_json::json!(0))])
            .build()
            .unwrap();
        let mut events = view.subscribe();
        // A store change under the file's override fires nothing; one in the open fires.
        store.insert("masked", "store".into()).await.unwrap();
        store.insert("open", 1.into()).await.unwrap();
        view.sync().await.unwrap();
        assert_eq!(changed(events.recv().now_or_never().flatten()), ("open".into(), Some(1.into())));
        assert!(events.recv().now_or_never().is_none(), "the masked change fired nothing");
        // Removing the override shows the store's value; a store removal falls to the default.
        std::fs::write(&file, "{}").unwrap();
        store.insert("fallback", 5.into()).await.unwrap();
        view.sync().await.unwrap();
        let mut seen: Vec<_> = (0..2).map(|_| changed(events.recv().now_or_never().flatten())).collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(seen, vec![("fallback".into(), Some(5.into())), ("masked".into(), Some("store".into()))]);
        store.remove("fallback").await.unwrap();
        view.sync().await.unwrap();
        assert_eq!(changed(events.recv().now_or_never().flatten()), ("fallback".into(), Some(0.into())));
        assert_eq!(view.layered_snapshot().layer_of("fallback"), Some("defaults"));
    }

    #[tokio::test]
    async fn a_bad_overrides_file_keeps_its_last_good_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flags.toml");
        std::fs::write(&file, "beta = true\nlimit = 3\n").unwrap();
        let view = Layered::<serde_json::Value>::builder().file(&file).build().unwrap();
        assert_eq!(view.snapshot().get("limit"), Some(&serde_json::json!(3)));
        std::fs::write(&file, "beta = \n").unwrap();
        view.sync().await.unwrap();
        assert_eq!(view.snapshot().get("beta"), Some(&serde_json::json!(true)), "kept");
        assert!(matches!(view.override_errors().as_slice(), [Error::InvalidOverride { .. }]));
        std::fs::write(&file, "beta = false\n").unwrap();
        view.sync().await.unwrap();
        assert_eq!(view.snapshot().get("beta"), Some(&serde_json::json!(false)));
        assert!(view.override_errors().is_empty());
        assert_eq!(view.layered_snapshot().versions(), vec![("file", 2)]);
        // At the build, a bad file is an error; a missing one an empty layer.
        std::fs::write(&file, "[").unwrap();
        let built = Layered::<serde_json::Value>::builder().file(&file).build();
        assert!(matches!(built, Err(Error::InvalidOverride { .. })));
        let missing = Layered::<serde_json::Value>::builder().file(dir.path().join("none.json")).build().unwrap();
        assert!(missing.snapshot().is_empty());
        let typed = Layered::<bool>::builder().file(dir.path().join("flags.json"));
        std::fs::write(dir.path().join("flags.json"), r#"{"beta": "yes"}"#).unwrap();
        assert!(matches!(typed.build(), Err(Error::InvalidOverride { .. })), "a value that is no bool");
    }

    #[tokio::test]
    async fn environment_variables_override_by_their_key() {
        // SAFETY: this test alone sets variables of this prefix.
        unsafe {
            std::env::set_var("DURABLE_LAYERED_TEST_new-checkout", "false");
            std::env::set_var("DURABLE_LAYERED_TEST_color", "blue");
        }
        let view = Layered::<serde_json::Value>::builder()
            .env("DURABLE_LAYERED_TEST_")
            .defaults([("new-checkout", serde_json::json!(true))])
            .build()
            .unwrap();
        let snapshot = view.layered_snapshot();
        assert_eq!(snapshot.get_with_layer("new-checkout"), Some((&serde_json::json!(false), "env")));
        assert_eq!(snapshot.get("color"), Some(&serde_json::json!("blue")), "not JSON: a string");
        let typed = Layered::<u32>::builder().env("DURABLE_LAYERED_TEST_").build();
        assert!(
            matches!(typed, Err(Error::InvalidOverride { layer, .. }) if layer.starts_with("$DURABLE_LAYERED_TEST_"))
        );
    }
}
