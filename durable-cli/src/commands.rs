//! The commands. Every one works on the store's bytes through `durable::connect`, so a
//! value goes from store to file to store byte for byte, whatever codec wrote it.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use durable::backend::{Backend, Batch, Changes, redact_url};
use durable::{Codec, DurableDict, Event, Json, Raw, Version};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::file::{self, Header, Staged, as_json, entry_line};
use crate::{CliError, Mode};

/// A copy or import this many keys or fewer, within the destination's size limit, is one
/// atomic batch.
const ONE_BATCH_KEYS: usize = 50_000;
/// The byte budget of a batch when the store names no limit of its own.
const DEFAULT_BATCH_BYTES: usize = 4 * 1024 * 1024;

async fn open(url: &str, namespace: &str) -> Result<Arc<dyn Backend>, CliError> {
    Ok(durable::connect(url, namespace).await?)
}

/// Every entry, in key order, and the version they belong to.
async fn read_all(backend: &dyn Backend) -> Result<(BTreeMap<String, Bytes>, Version), CliError> {
    let durables = backend.durables().await?;
    Ok((durables.entries.into_iter().collect(), durables.version))
}

/// A value for people: its JSON text, other text marked as such, or its size.
fn show(value: &[u8]) -> String {
    match (as_json(value), std::str::from_utf8(value)) {
        (Some(json), _) => json.to_owned(),
        (None, Ok(text)) => format!("text:{}", serde_json::Value::from(text)),
        (None, Err(_)) => format!("<{} bytes>", value.len()),
    }
}

fn out(line: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").map_err(|err| CliError::Input(format!("writing to stdout: {err}")))
}

pub async fn get(url: &str, namespace: &str, key: &str, raw: bool) -> Result<(), CliError> {
    let backend = open(url, namespace).await?;
    let (entries, _) = read_all(&*backend).await?;
    let Some(value) = entries.get(key) else {
        return Err(CliError::Input(format!("no key {key:?} in namespace {namespace:?}")));
    };
    if raw {
        let mut stdout = std::io::stdout().lock();
        return stdout.write_all(value).map_err(|err| CliError::Input(format!("writing to stdout: {err}")));
    }
    match as_json(value) {
        Some(text) => out(text),
        None => Err(CliError::Input(format!("the value of {key:?} is {} bytes of not JSON: use --raw", value.len()))),
    }
}

pub async fn set(url: &str, namespace: &str, key: &str, value: &str, raw: bool) -> Result<(), CliError> {
    let text = if value == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|err| CliError::Input(format!("reading stdin: {err}")))?
    } else {
        value.to_owned()
    };
    let bytes = if raw {
        Bytes::from(text)
    } else {
        let parsed: serde_json::Value = serde_json::from_str(&text)
            .map_err(|err| CliError::Input(format!("the value is not JSON ({err}); use --raw for text")))?;
        Codec::encode(&Json, &parsed).map_err(|err| CliError::Input(format!("cannot encode the value: {err}")))?
    };
    let backend = open(url, namespace).await?;
    backend.validate_key(key)?;
    if let Some(max) = backend.max_value_size().filter(|max| bytes.len() > *max) {
        return Err(CliError::Input(format!("the value is {} bytes; the store takes at most {max}", bytes.len())));
    }
    let version = backend.persist(key, bytes).await?;
    out(&format!("set {key} (version {version})"))
}

pub async fn rm(url: &str, namespace: &str, key: &str) -> Result<(), CliError> {
    let backend = open(url, namespace).await?;
    backend.validate_key(key)?;
    match backend.depersist(key).await? {
        Some(version) => out(&format!("removed {key} (version {version})")),
        None => Err(CliError::Input(format!("no key {key:?} in namespace {namespace:?}"))),
    }
}

pub async fn ls(url: &str, namespace: &str, prefix: Option<&str>, values: bool) -> Result<(), CliError> {
    let backend = open(url, namespace).await?;
    let (entries, _) = read_all(&*backend).await?;
    for (key, value) in entries.iter().filter(|(key, _)| prefix.is_none_or(|prefix| key.starts_with(prefix))) {
        if values {
            out(&format!("{key}\t{}", show(value)))?;
        } else {
            out(key)?;
        }
    }
    Ok(())
}

pub async fn status(url: &str, namespace: &str) -> Result<(), CliError> {
    let backend = open(url, namespace).await?;
    let started = Instant::now();
    let dict = DurableDict::<Bytes>::builder(Arc::clone(&backend)).codec(Raw).autosync(false).build().await?;
    let loaded = started.elapsed();
    let started = Instant::now();
    let version = backend.last_updated().await?;
    let check = started.elapsed();
    // Hints are set up in the background: give them a moment to say whether they flow.
    let deadline = Instant::now() + Duration::from_millis(500);
    while dict.status().hints != durable::HintHealth::Healthy && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = dict.status();
    out(&format!("store:     {} ({})", backend.describe(), redact_url(url)))?;
    out(&format!("namespace: {namespace}"))?;
    out(&format!("version:   {version}"))?;
    out(&format!("keys:      {}", dict.snapshot().len()))?;
    out(&format!("hints:     {:?}", status.hints))?;
    out(&format!("sync:      {:.1} ms (one version check)", check.as_secs_f64() * 1000.0))?;
    out(&format!("load:      {:.1} ms (every key)", loaded.as_secs_f64() * 1000.0))
}

pub async fn watch(url: &str, namespace: &str, key: Option<&str>) -> Result<(), CliError> {
    let backend = open(url, namespace).await?;
    let dict = DurableDict::<Bytes>::builder(backend)
        .codec(Raw)
        .autosync(false)
        .background_refresh(true)
        .poll_interval(Duration::from_millis(250))
        .build()
        .await?;
    let mut events = match key {
        Some(key) => dict.watch_key(key),
        None => dict.subscribe(),
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|err| CliError::Input(format!("cannot listen for SIGTERM: {err}")))?;
    eprintln!("durable: watching {namespace} at version {} (Ctrl-C to stop)", dict.snapshot().version());
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        };
        let line = match event {
            Some(Event::Changed(change)) => {
                let value = |v: &Option<Arc<Bytes>>| -> serde_json::Value {
                    match v {
                        None => serde_json::Value::Null,
                        Some(bytes) => match as_json(bytes) {
                            Some(text) => serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
                            None => serde_json::json!({ "bytes": bytes.len() }),
                        },
                    }
                };
                serde_json::json!({
                    "key": &*change.key,
                    "old": value(&change.old),
                    "new": value(&change.new),
                    "version": change.version,
                })
            }
            Some(Event::Lagged { missed }) => serde_json::json!({ "lagged": missed }),
            Some(Event::Undecodable { key, error }) => serde_json::json!({ "key": &*key, "error": error.to_string() }),
            None => break,
        };
        out(&line.to_string())?;
    }
    Ok(())
}

pub async fn export(url: &str, namespace: &str, path: Option<&Path>) -> Result<(), CliError> {
    let backend = open(url, namespace).await?;
    let (entries, version) = read_all(&*backend).await?;
    let header = Header {
        durable_export: 1,
        namespace: namespace.to_owned(),
        version,
        codec: file::codec_of(entries.values()).to_owned(),
        keys: entries.len(),
    };
    let mut text = serde_json::to_string(&header).expect("the header serializes");
    text.push('\n');
    for (key, value) in &entries {
        text.push_str(&entry_line(key, Some(value)));
        text.push('\n');
    }
    match path.filter(|path| *path != Path::new("-")) {
        None => std::io::stdout().lock().write_all(text.as_bytes()),
        Some(path) => {
            // Written beside and renamed: a reader never sees half an export.
            let partial = path.with_extension("partial");
            std::fs::write(&partial, text).and_then(|()| std::fs::rename(&partial, path))
        }
    }
    .map_err(|err| CliError::Input(format!("writing the export: {err}")))?;
    eprintln!("durable: exported {} keys of {namespace} at version {version}", entries.len());
    Ok(())
}

fn read_file(path: &Path) -> Result<Staged, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| CliError::Input(format!("cannot read {}: {err}", path.display())))?;
    file::parse(&text, &path.display().to_string())
}

/// The writes that take `current` to what `staged` says: its puts that differ, its
/// deletes of keys that are there, and — when `replace` — deletes of every key it does
/// not name.
fn plan(current: &BTreeMap<String, Bytes>, staged: &Staged, replace: bool) -> Vec<(String, Option<Bytes>)> {
    let mut changes: Vec<(String, Option<Bytes>)> = staged
        .changes
        .iter()
        .filter(|(key, state)| current.get(*key) != state.as_ref())
        .map(|(key, state)| (key.clone(), state.clone()))
        .collect();
    if replace {
        changes.extend(current.keys().filter(|key| !staged.changes.contains_key(*key)).map(|key| (key.clone(), None)));
        changes.sort_by(|a, b| a.0.cmp(&b.0));
    }
    changes
}

/// Prints `+ key value`, `~ key old -> new`, `- key` for each change.
fn print_diff(current: &BTreeMap<String, Bytes>, changes: &[(String, Option<Bytes>)]) -> Result<(), CliError> {
    for (key, state) in changes {
        let line = match (current.get(key), state) {
            (None, Some(new)) => format!("+ {key} {}", show(new)),
            (Some(old), Some(new)) => format!("~ {key} {} -> {}", show(old), show(new)),
            (_, None) => format!("- {key}"),
        };
        out(&line)?;
    }
    Ok(())
}

/// How a set of writes went: the last version made, how many batches, and whether they
/// were one.
struct Applied {
    version: Option<Version>,
    batches: usize,
    one: bool,
}

impl Applied {
    fn describe(&self) -> String {
        match (self.one, self.version) {
            (_, None) => "nothing to write".to_owned(),
            (true, Some(version)) => format!("in one atomic batch (version {version})"),
            (false, Some(version)) => format!("in {} batches, each atomic (last version {version})", self.batches),
        }
    }
}

fn weight(key: &str, state: &Option<Bytes>) -> usize {
    key.len() + state.as_ref().map_or(0, Bytes::len)
}

/// The writes as one batch when they fit the destination (`guard` checked then), else in
/// batches of at most `batch_keys` keys within its size limit, ticking `progress`.
async fn apply_all(
    backend: &dyn Backend,
    changes: Vec<(String, Option<Bytes>)>,
    guard: Option<Version>,
    batch_keys: usize,
    progress: &ProgressBar,
) -> Result<Applied, CliError> {
    let budget = backend.max_value_size().unwrap_or(DEFAULT_BATCH_BYTES).min(DEFAULT_BATCH_BYTES);
    let total: usize = changes.iter().map(|(key, state)| weight(key, state)).sum();
    let one = total <= budget && changes.len() <= ONE_BATCH_KEYS;
    if !one && guard.is_some() {
        return Err(CliError::Input(format!(
            "{} changes ({total} bytes) do not fit one atomic batch of the store ({budget} bytes, {ONE_BATCH_KEYS} keys)",
            changes.len()
        )));
    }
    let to_batch = |chunk: &[(String, Option<Bytes>)]| {
        chunk.iter().fold(Batch::new(), |batch, (key, state)| match state {
            Some(value) => batch.put(key.as_str(), value.clone()),
            None => batch.delete(key.as_str()),
        })
    };
    if one {
        let mut batch = to_batch(&changes);
        if let Some(guard) = guard {
            batch = batch.guard(guard);
        }
        let version = backend.apply(batch).await?;
        progress.inc(changes.len() as u64);
        return Ok(Applied { version, batches: 1, one: true });
    }
    let (mut version, mut batches, mut start) = (None, 0, 0);
    while start < changes.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < changes.len() && end - start < batch_keys.max(1) {
            let next = weight(&changes[end].0, &changes[end].1);
            if end > start && bytes + next > budget {
                break;
            }
            bytes += next;
            end += 1;
        }
        if let Some(made) = backend.apply(to_batch(&changes[start..end])).await? {
            version = Some(made);
        }
        batches += 1;
        progress.inc((end - start) as u64);
        if progress.is_hidden() && batches % 100 == 0 {
            progress.println(format!("{end} of {} keys", changes.len()));
        }
        start = end;
    }
    Ok(Applied { version, batches, one: false })
}

/// A progress bar on a terminal (keys, keys/s, ETA); nothing in a pipe.
fn progress_bar(len: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{bar:40} {pos}/{len} keys  {per_sec}  ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

pub async fn import(path: &Path, url: &str, namespace: &str, mode: Mode, dry_run: bool) -> Result<(), CliError> {
    let staged = read_file(path)?;
    let backend = open(url, namespace).await?;
    for (key, state) in &staged.changes {
        backend.validate_key(key)?;
        if let (Some(value), Some(max)) = (state, backend.max_value_size())
            && value.len() > max
        {
            return Err(CliError::Input(format!(
                "the value of {key:?} is {} bytes; the store takes {max}",
                value.len()
            )));
        }
    }
    let (current, version) = read_all(&*backend).await?;
    let changes = plan(&current, &staged, mode == Mode::Replace);
    if dry_run {
        print_diff(&current, &changes)?;
        return out(&format!("dry run: {} changes against version {version}, nothing written", changes.len()));
    }
    let count = changes.len();
    let bar = progress_bar(count);
    // One batch is guarded by the version the plan was made against: a concurrent writer
    // makes it fail rather than be overwritten unseen.
    let guard = (count <= ONE_BATCH_KEYS).then_some(version);
    let applied = match apply_all(&*backend, changes.clone(), guard, 1000, &bar).await {
        Err(CliError::Input(_)) => apply_all(&*backend, changes, None, 1000, &bar).await?,
        other => other?,
    };
    bar.finish_and_clear();
    out(&format!("imported {count} changes into {namespace} {}", applied.describe()))
}

pub async fn copy(
    src_url: &str,
    src_namespace: &str,
    dst_url: &str,
    dst_namespace: &str,
    mode: Mode,
    batch_keys: usize,
) -> Result<(), CliError> {
    let source = open(src_url, src_namespace).await?;
    let destination = open(dst_url, dst_namespace).await?;
    let (entries, version) = read_all(&*source).await?;
    for (key, value) in &entries {
        destination.validate_key(key)?;
        if let Some(max) = destination.max_value_size().filter(|max| value.len() > *max) {
            return Err(CliError::Input(format!(
                "the value of {key:?} is {} bytes; the destination takes at most {max}",
                value.len()
            )));
        }
    }
    let count = entries.len();
    let staged = Staged { header: None, changes: entries.into_iter().map(|(key, value)| (key, Some(value))).collect() };
    let changes = match mode {
        // Every key is written, whatever the destination holds.
        Mode::Upsert => staged.changes.into_iter().collect(),
        // Only what differs, and the destination's other keys removed.
        Mode::Replace => plan(&read_all(&*destination).await?.0, &staged, true),
    };
    let bar = progress_bar(changes.len());
    let started = Instant::now();
    let applied = apply_all(&*destination, changes, None, batch_keys, &bar).await?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    out(&format!(
        "copied {count} keys of {src_namespace} (version {version}) to {dst_namespace} {} in {seconds:.2} s ({:.0} keys/s)",
        applied.describe(),
        count as f64 / seconds.max(1e-9)
    ))
}

pub async fn diff(path: &Path, url: &str, namespace: &str) -> Result<(), CliError> {
    let staged = read_file(path)?;
    let backend = open(url, namespace).await?;
    let (current, version) = read_all(&*backend).await?;
    let changes = plan(&current, &staged, staged.header.is_some());
    print_diff(&current, &changes)?;
    eprintln!("durable: {} changes against version {version}", changes.len());
    Ok(())
}

pub async fn push(path: &Path, url: &str, namespace: &str, base: Version) -> Result<(), CliError> {
    let staged = read_file(path)?;
    let backend = open(url, namespace).await?;
    let (current, _) = read_all(&*backend).await?;
    let changes = plan(&current, &staged, staged.header.is_some());
    if changes.is_empty() {
        return out("nothing to push: the store already holds the file's state");
    }
    let count = changes.len();
    match apply_all(&*backend, changes, Some(base), usize::MAX, &ProgressBar::hidden()).await {
        Ok(applied) => out(&format!("pushed {count} changes {}", applied.describe())),
        Err(CliError::Store(durable::Error::VersionConflict { current, .. })) => {
            let moved = match backend.changes_since(base).await {
                Ok(Changes::Delta { changes, .. }) => {
                    let keys: Vec<&str> = changes.iter().map(|change| change.key.as_str()).collect();
                    format!("changed since: {}", keys.join(", "))
                }
                _ => "the store cannot say which keys changed".to_owned(),
            };
            Err(CliError::Moved(format!(
                "the store moved from version {base} to {current} ({moved}); nothing written — diff again and push with --base {current}"
            )))
        }
        Err(other) => Err(other),
    }
}

pub async fn history(url: &str, namespace: &str, key: Option<&str>, limit: usize) -> Result<(), CliError> {
    let backend = open(url, namespace).await?;
    let records = match key {
        Some(key) => backend.history(key, limit).await?,
        None => {
            let version = backend.last_updated().await?;
            let mut after = version.saturating_sub(limit as u64);
            let mut records = Vec::new();
            loop {
                let page = backend.journal(after, limit.max(1)).await?;
                let last = page.records.last().map(|record| record.version);
                records.extend(page.records);
                match last {
                    Some(last) if page.more => after = last,
                    _ => break,
                }
            }
            records.reverse();
            records.truncate(limit);
            records
        }
    };
    for record in records {
        let value = |v: &Option<Bytes>| v.as_deref().map(show);
        let time = record.time.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|t| t.as_millis() as u64);
        let line = serde_json::json!({
            "version": record.version,
            "key": record.key,
            "old": value(&record.old),
            "new": value(&record.new),
            "actor": record.actor,
            "reason": record.reason,
            "time_ms": time,
        });
        out(&line.to_string())?;
    }
    Ok(())
}

pub async fn drop_namespace(url: &str, namespace: &str, yes: bool) -> Result<(), CliError> {
    let backend = open(url, namespace).await?;
    let (current, version) = read_all(&*backend).await?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::Input("drop asks for a confirmation on a terminal; pass --yes to skip it".into()));
        }
        eprint!(
            "remove namespace {namespace} ({} keys, its journal and leases) from {}? type the namespace to confirm: ",
            current.len(),
            redact_url(url)
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).map_err(|err| CliError::Input(format!("reading stdin: {err}")))?;
        if answer.trim() != namespace {
            return Err(CliError::Input("not confirmed; nothing removed".into()));
        }
    }
    backend.remove_namespace().await?;
    out(&format!("removed namespace {namespace}: {} keys, its version ({version}), journal and leases", current.len()))
}
