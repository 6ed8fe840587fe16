//! [`RedisBackend`]: the `Backend` implementation — each mutation one Lua script, reads one
//! command or one MULTI/EXEC — and the parsing of Redis's replies.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use durable_core::lease::{LeaseAnswer, LeaseOp, StoredLease};
use durable_core::{
    Backend, Batch, Changes, Durables, Error, HintStream, JournalPage, JournalRecord, KeyChange, Op, Result, Version,
};
use redis::{AsyncCommands, Value};

use crate::builder::RedisBackendBuilder;
use crate::connection::{Shared, unexpected};
use crate::layout::{Keys, validate_namespace};
use crate::{DEFAULT_CHANGE_LOG_LEN, DEFAULT_MAX_VALUE_SIZE, DEFAULT_TIMEOUT, NAME, hints};

/// One namespace in Redis; see the crate docs. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RedisBackend {
    pub(crate) shared: Arc<Shared>,
    pub(crate) keys: Keys,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.shared.redactor.url())
            .field("namespace", &self.keys.namespace)
            .finish()
    }
}

impl RedisBackend {
    /// Connects with default options; see [`RedisBackend::builder`].
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Self::builder(url).connect(namespace).await
    }

    /// Options: operation timeout, change-log length, value size limit.
    pub fn builder(url: &str) -> RedisBackendBuilder {
        RedisBackendBuilder {
            url: url.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            change_log_len: DEFAULT_CHANGE_LOG_LEN,
            journal: durable_core::JournalConfig::default(),
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            #[cfg(feature = "tls")]
            tls_root_cert: None,
        }
    }

    /// Another namespace on the same connection.
    pub fn namespace(&self, namespace: &str) -> Result<Self> {
        validate_namespace(namespace)?;
        Ok(Self { shared: Arc::clone(&self.shared), keys: Keys::new(namespace) })
    }

    /// The pub/sub channel hints travel on.
    pub fn channel(&self) -> &str {
        &self.keys.channel
    }
}

fn version_of(value: &Value) -> Result<Version> {
    match value {
        Value::Int(n) => Version::try_from(*n).map_err(|_| unexpected(format!("negative version {n}"))),
        other => Err(unexpected(format!("expected a version, got {other:?}"))),
    }
}

fn bytes_of(value: Value) -> Result<Option<Bytes>> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => Ok(Some(Bytes::from(bytes))),
        Value::SimpleString(text) => Ok(Some(Bytes::from(text))),
        other => Err(unexpected(format!("expected a value, got {other:?}"))),
    }
}

pub(crate) fn parse_counter(raw: Option<Vec<u8>>) -> Result<Version> {
    let Some(raw) = raw else { return Ok(0) };
    std::str::from_utf8(&raw)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .ok_or_else(|| unexpected(format!("the counter holds {:?}, not a version", String::from_utf8_lossy(&raw))))
}

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn max_value_size(&self) -> Option<usize> {
        Some(self.shared.max_value_size)
    }

    /// The server(s) and the namespace's counter key: handles on both read the same data.
    fn fetch_scope(&self) -> Option<String> {
        Some(format!("{NAME}\n{}\n{}", self.shared.url, self.keys.counter))
    }

    async fn persist(&self, key: &str, value: Bytes) -> Result<Version> {
        self.validate_key(key)?;
        let reply = self
            .mutate("persist", &self.shared.scripts.persist, None, &[(key, None)], &[key.as_bytes(), &value])
            .await?;
        version_of(&reply)
    }

    async fn depersist(&self, key: &str) -> Result<Option<Version>> {
        self.validate_key(key)?;
        match self.mutate("depersist", &self.shared.scripts.depersist, None, &[(key, None)], &[key.as_bytes()]).await? {
            Value::Nil => Ok(None),
            reply => version_of(&reply).map(Some),
        }
    }

    async fn durables(&self) -> Result<Durables> {
        let mut connection = self.shared.commands.clone();
        let query = redis::pipe().atomic().get(&self.keys.counter).hgetall(&self.keys.hash).to_owned();
        let (counter, entries): (Option<Vec<u8>>, Vec<(Vec<u8>, Vec<u8>)>) =
            self.run("durables", query.query_async(&mut connection)).await?;
        let version = parse_counter(counter)?;
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            match String::from_utf8(key) {
                Ok(key) => out.push((key, Bytes::from(value))),
                Err(err) => tracing::warn!(
                    namespace = %self.keys.namespace,
                    key = %String::from_utf8_lossy(err.as_bytes()),
                    "durable-redis: skipping a hash field that is not UTF-8"
                ),
            }
        }
        Ok(Durables { entries: out, version })
    }

    async fn last_updated(&self) -> Result<Version> {
        let mut connection = self.shared.commands.clone();
        let raw: Option<Vec<u8>> = self.run("last_updated", connection.get(&self.keys.counter)).await?;
        parse_counter(raw)
    }

    async fn apply(&self, batch: Batch) -> Result<Option<Version>> {
        for (key, _) in batch.ops() {
            self.validate_key(key)?;
        }
        let leased = batch.leased_keys();
        if leased.is_empty() && batch.guard_version().is_none() {
            return Ok(None);
        }
        let guard = batch.guard_version().map(|version| version.to_string()).unwrap_or_default();
        let mut args: Vec<&[u8]> = Vec::with_capacity(1 + 3 * batch.len());
        args.push(guard.as_bytes());
        for (key, op) in batch.ops() {
            match op {
                Op::Put(value) => args.extend([b"p".as_slice(), key.as_bytes(), value.as_ref()]),
                Op::Delete => args.extend([b"d".as_slice(), key.as_bytes(), b"".as_slice()]),
            }
        }
        match self.mutate("apply", &self.shared.scripts.apply, batch.reason_text(), &leased, &args).await? {
            Value::Nil => Ok(None),
            Value::Array(items) if items.len() == 2 && items[0] == Value::Int(-1) => {
                let current = version_of(&items[1])?;
                Err(Error::VersionConflict { expected: batch.guard_version().unwrap_or_default(), current })
            }
            reply => version_of(&reply).map(Some),
        }
    }

    async fn pop(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        self.validate_key(key)?;
        match self.mutate("pop", &self.shared.scripts.pop, None, &[(key, None)], &[key.as_bytes()]).await? {
            Value::Nil => Ok(None),
            Value::Array(mut items) if items.len() == 2 => {
                let version = version_of(&items[1])?;
                let value = bytes_of(items.swap_remove(0))?.unwrap_or_default();
                Ok(Some((value, version)))
            }
            other => Err(unexpected(format!("unexpected pop reply {other:?}"))),
        }
    }

    async fn setdefault(&self, key: &str, value: Bytes) -> Result<(Bytes, Option<Version>)> {
        self.validate_key(key)?;
        match self
            .mutate("setdefault", &self.shared.scripts.setdefault, None, &[(key, None)], &[key.as_bytes(), &value])
            .await?
        {
            Value::Array(mut items) if items.len() == 1 => Ok((bytes_of(items.remove(0))?.unwrap_or_default(), None)),
            Value::Array(mut items) if items.len() == 2 => {
                let version = version_of(&items[1])?;
                Ok((bytes_of(items.swap_remove(0))?.unwrap_or_default(), Some(version)))
            }
            other => Err(unexpected(format!("unexpected setdefault reply {other:?}"))),
        }
    }

    async fn changes_since(&self, since: Version) -> Result<Changes> {
        let mut invocation = self.shared.scripts.changes.prepare_invoke();
        let k = &self.keys;
        invocation.key(&k.hash).key(&k.counter).key(&k.log).key(&k.head).key(&k.floor).arg(since);
        let mut connection = self.shared.commands.clone();
        let reply: Value = self.run("changes_since", invocation.invoke_async(&mut connection)).await?;
        let Value::Array(items) = reply else {
            return Err(unexpected(format!("unexpected changes reply {reply:?}")));
        };
        let mut items = items.into_iter();
        let version = match items.next() {
            Some(Value::Int(-1)) | None => return Ok(Changes::TooOld),
            Some(first) => version_of(&first)?,
        };
        let mut changes = Vec::new();
        while let (Some(key), Some(changed_at), Some(value)) = (items.next(), items.next(), items.next()) {
            let key = match bytes_of(key)?.map(|k| String::from_utf8(k.to_vec())) {
                Some(Ok(key)) => key,
                _ => continue,
            };
            changes.push(KeyChange { key, value: bytes_of(value)?, version: version_of(&changed_at)? });
        }
        Ok(Changes::Delta { changes, version })
    }

    async fn watch(&self) -> Result<Option<HintStream>> {
        Ok(Some(hints::subscribe(self).await?))
    }

    async fn compare_and_swap(&self, key: &str, old: Option<Bytes>, new: Option<Bytes>) -> Result<Option<Version>> {
        self.validate_key(key)?;
        let flag = |present: bool| if present { &b"1"[..] } else { &b"0"[..] };
        let args: [&[u8]; 5] = [
            key.as_bytes(),
            flag(old.is_some()),
            old.as_deref().unwrap_or_default(),
            flag(new.is_some()),
            new.as_deref().unwrap_or_default(),
        ];
        match self
            .mutate("compare_and_swap", &self.shared.scripts.compare_and_swap, None, &[(key, None)], &args)
            .await?
        {
            Value::BulkString(text) if text == b"conflict" => Err(Error::Conflict { key: key.into() }),
            Value::SimpleString(text) if text == "conflict" => Err(Error::Conflict { key: key.into() }),
            Value::Nil => Ok(None),
            reply => version_of(&reply).map(Some),
        }
    }

    async fn journal(&self, after: Version, limit: usize) -> Result<JournalPage> {
        self.journal_page(after, limit).await
    }

    async fn history(&self, key: &str, limit: usize) -> Result<Vec<JournalRecord>> {
        self.key_history(key, limit).await
    }

    async fn lease(&self, key: &str, op: LeaseOp) -> Result<LeaseAnswer> {
        self.validate_key(key)?;
        let (code, token, ttl) = match op {
            LeaseOp::Acquire { ttl } => ("a", None, Some(ttl)),
            LeaseOp::Renew { token, ttl } => ("r", Some(token), Some(ttl)),
            LeaseOp::Release { token } => ("x", Some(token), None),
            other => return Err(unexpected(format!("unknown lease operation {other:?}"))),
        };
        let mut invocation = self.shared.scripts.lease.prepare_invoke();
        invocation.key(&self.keys.leases).arg(&self.keys.channel).arg(code).arg(key);
        invocation.arg(token.map(|token| token.to_string()).unwrap_or_default());
        invocation.arg(ttl.map_or(0, durable_core::lease::ms)).arg(self.shared.journal.actor_name());
        let mut connection = self.shared.commands.clone();
        let reply: (i64, i64, i64, i64, String) = self.run("lease", invocation.invoke_async(&mut connection)).await?;
        let (status, found, expires_ms, now, holder) = reply;
        let found = u64::try_from(found).map_err(|_| unexpected(format!("negative lease token {found}")))?;
        let info = StoredLease { token: found, holder, expires_ms }.info(now);
        match status {
            1 => Ok(LeaseAnswer::Granted(info)),
            0 => Ok(LeaseAnswer::Held(info)),
            2 => Ok(LeaseAnswer::Released { held: true }),
            3 => Ok(LeaseAnswer::Released { held: false }),
            -1 => Err(Error::LeaseLost { key: key.into(), token: token.unwrap_or_default() }),
            other => Err(unexpected(format!("unexpected lease status {other}"))),
        }
    }

    /// One script deletes every key of the namespace's layout and hints.
    async fn remove_namespace(&self) -> Result<()> {
        let k = &self.keys;
        let mut invocation = self.shared.scripts.remove.prepare_invoke();
        for key in [&k.hash, &k.counter, &k.log, &k.head, &k.floor, &k.journal, &k.journal_trimmed, &k.leases] {
            invocation.key(key);
        }
        invocation.arg(&k.channel);
        let mut connection = self.shared.commands.clone();
        self.run("remove_namespace", invocation.invoke_async::<i64>(&mut connection)).await.map(drop)
    }
}
