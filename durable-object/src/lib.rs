//! `durable-object`: the object-storage backend of `durable` — Amazon S3 (and S3-compatible
//! stores), Azure Blob storage and a plain local directory, through Apache Arrow's
//! [`object_store`].
//!
//! ```no_run
//! # async fn demo() -> durable_core::Result<()> {
//! use durable_object::ObjectBackend;
//! let flags = ObjectBackend::connect("s3://my-bucket/durable?region=eu-west-1", "flags").await?;
//! let local = ObjectBackend::connect("file:///var/lib/myapp/durable", "flags").await?;
//! # Ok(()) }
//! ```
//!
//! # URLs
//! - `s3://bucket[/prefix]` — credentials and region from the environment (`AWS_*`, as the
//!   AWS tools read them) or from the URL's query: any of object_store's S3 keys, such as
//!   `region`, `endpoint` (an S3-compatible server), `access_key_id`, `secret_access_key`,
//!   `session_token`, `allow_http=true`.
//! - `az://container[/prefix]` or `azure://…` — `AZURE_*` from the environment or in the
//!   query: `account_name`, `access_key`, `sas_token`, `endpoint`, `use_emulator=true`, ….
//! - `file:///absolute/dir` — a local directory (made if missing), no server.
//!
//! Credentials never appear in errors, logs or `Debug` output: every message is scrubbed
//! of the secrets the URL and the environment carried.
//!
//! # Layout
//! Namespace `ns` lives under `<prefix>/ns/`:
//! - `log/<version>` — one **commit** per version (names are the version in 20 digits, so
//!   they list in order): every key the version changed with its new value (or deletion)
//!   and, when the writer keeps a journal, the old value, the actor and the reason.
//! - `checkpoint/<version>` — the whole namespace at that version, LZ4-compressed.
//! - `blobs/<sha-256>-<id>` — values larger than the inline limit (256 KiB by default), one
//!   object per commit that writes one (`id` is the commit's), named by their content;
//!   commits and checkpoints refer to them by name, and a reader checks the hash. (Format 1
//!   wrote `blobs/<sha-256>`, shared by every commit of the same bytes; still read.)
//!
//! Every object is framed (`DUR`, its kind, a format version, a CRC-32 of the body): a
//! torn, truncated or foreign object is refused whole and never half-read.
//!
//! # The commit protocol
//! Object stores have no transactions, only conditional writes. As in Delta Lake's commit
//! log, **the version is the position in the log**, and a write commits by *creating* the
//! next log object with `If-None-Match: *` (object_store's `PutMode::Create`; a hard link on
//! a local disk). Of two writers racing for version N+1 exactly one creates it; the other
//! is told it exists, reads it, decides again against the state it lost to (so a
//! `compare_and_swap`, `pop`, `setdefault` or guarded batch answers as if it had come
//! second) and tries N+2. A create whose answer was lost and is retried meets its own commit
//! (by the random id each commit carries) and counts as done. Hence:
//! - every version is exactly one commit; readers replay commits in order, so every state a
//!   dict shows is the state the log had at that version (invariant 2);
//! - a mutation is one object, so a batch is atomic: no reader sees part of one;
//! - an acknowledged write is in the log and is never lost or forked.
//!
//! Each handle keeps a replica of the namespace, replayed from the log: writers decide
//! against it, and deltas are answered from it.
//! - A **no-change `sync()`** is one request: a GET of the next log object, answered 404.
//! - A **delta** reads the next objects until one is missing (past three: one listing of
//!   the rest, read in parallel): two GETs for one change, the version check's; the delta
//!   itself is then answered from the replica.
//! - A **full load** lists the checkpoints, reads the newest and replays the log after it.
//!
//! Object stores push nothing: [`Backend::watch`](durable_core::Backend::watch) answers
//! `None`, and dicts poll (a background refresh interval, or `sync()` per request).
//!
//! # Checkpoints and clean-up
//! The writer of every 256th version (`checkpoint_every`) writes a checkpoint afterwards,
//! in the background, then removes checkpoints older than the two newest and log objects
//! at or below the older kept checkpoint — and at or below the journal's trim point — once
//! they are older than the log retention (1 h by default) by the store's clock (the newest
//! checkpoint's time). A crash between a commit and its checkpoint loses nothing (the next
//! checkpoint comes 256 versions later; readers replay the longer log meanwhile); a crash
//! during clean-up leaves objects the next clean-up removes.
//!
//! Large values are collected too (at most every half retention per handle): an object
//! under `blobs/` that no checkpoint and no log object refers to is removed once it is
//! older than the retention. Each is written by one commit attempt shortly before that
//! commit and never reused, so one that old that nothing refers to never will be: its
//! value was overwritten or deleted and the log cleaned up past it, or its writer lost the
//! version (or crashed) before committing. A clean-up that finds an object it listed gone
//! or unreadable (another writer cleaning up at the same time) removes nothing that round.
//!
//! A reader whose next log object is absent trusts that nothing changed only while it
//! checked the store in full (checkpoints listed, its head confirmed) within the last
//! `verify_every` (5 min), which is at most half the retention: a log object removed past
//! it was written more than the retention ago, so the reader would have seen it. The full
//! check also notices a namespace deleted and made anew (the head commit is another), and
//! reloads. A writer is safe as long as no single write takes longer than the retention
//! (each is bounded by the timeout, 30 s by default).
//!
//! # Journal
//! The log is the journal: a journaled commit holds the old values, the actor and the
//! reason, and its object's Last-Modified time is the record's time (the store's clock).
//! Retention by count or age (as [`JournalConfig`](durable_core::JournalConfig) says) is
//! written into commits as a trim point; records at or below it are no longer shown, and
//! their objects go with the clean-up. A writer that keeps no journal leaves its versions
//! as gaps. `history(key)` reads every retained log object.
//!
//! # Leases
//! Leases are commits too. Acquiring, renewing or releasing a lease creates the next log
//! object like a write, holding the operation instead of changes; a write under a lease
//! carries its fencing tokens in its commit. **Every reader decides these commits the same
//! way when it replays the log**, with [`durable_core::lease`]'s rules and, for the store's
//! clock, the commit object's own Last-Modified time — stamped by the store, floored to
//! its resolution (whole seconds on S3 and Azure, milliseconds on a local disk), read from
//! the object by every reader alike. A write a lease refuses still takes its version, but
//! changes nothing, shows in no delta, and is no journal record (nor a journal gap, like a
//! lease operation: [`JournalPage::unchanged`](durable_core::JournalPage::unchanged)).
//! - The writer of a lease operation, or of a write touching a leased key, reads its
//!   commit's time back (one HEAD) and replays it to learn the answer.
//! - A lease found expired by any commit is gone for good, so a later commit stamped a
//!   little earlier by another of the store's servers cannot revive it.
//! - Because a stamp is known only to the second, a lease is granted that much longer in
//!   the store: its holder counts down `ttl` from its request on its monotonic clock, and
//!   others may have to wait up to one second more than `ttl` on S3 and Azure.
//! - A refusal that is certain is given without writing: each handle keeps a reading of
//!   the store's clock (its own commits' stamps, or an overwrite of the namespace's
//!   `clock` object when it has none from the last minute) with bounds on the time now. A
//!   write to a key whose lease is certainly live by those bounds fails with
//!   [`Error::Leased`](durable_core::Error::Leased) at once; only near an expiry does a
//!   writer commit and let the replay decide.
//! - No hints: a waiter asks again every 20 ms (one GET while the lease is certainly
//!   held).
//! - Checkpoints carry the leases, the last token per key and the versions refused above
//!   the journal's trim point.
//!
//! # Formats
//! Objects with lease data or large values are written in format 2, which a version of
//! `durable` before it refuses whole (objects without either stay format 1, byte for
//! byte): a namespace whose writers use leases or store large values needs every reader at
//! this version or later.

#![warn(missing_docs)]

mod backend;
mod format;
mod replica;
mod store;

pub use backend::{
    DEFAULT_CHANGE_LOG, DEFAULT_CHECKPOINT_EVERY, DEFAULT_INLINE_LIMIT, DEFAULT_LOG_RETENTION, DEFAULT_MAX_VALUE_SIZE,
    DEFAULT_TIMEOUT, DEFAULT_VERIFY_EVERY, ObjectBackend, ObjectBackendBuilder,
};

/// Opens `namespace` at an object-store URL: the facade's registry entry for `s3://`,
/// `az://`, `azure://` and `file://`.
pub fn open<'a>(url: &'a str, namespace: &'a str) -> durable_core::Opening<'a> {
    Box::pin(async move {
        let backend: std::sync::Arc<dyn durable_core::Backend> =
            std::sync::Arc::new(ObjectBackend::connect(url, namespace).await?);
        Ok(backend)
    })
}
