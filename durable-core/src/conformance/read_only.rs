//! The suite, read-only dicts: they follow the store and never write to it.

use std::sync::Arc;

use serde_json::{Value, json};

use super::support::{manual, snapshot_contents, store_contents};
use super::{BackendFactory, PATIENCE, unique_namespace};
use crate::dict::DurableDict;
use crate::error::Error;
use crate::instrument::CountingBackend;

/// A read-only dict loads, syncs and hears hints as any other, and refuses every write
/// with [`Error::ReadOnly`] without a single write call reaching the store.
pub async fn a_read_only_dict_follows_the_store_and_refuses_writes(f: &dyn BackendFactory) {
    let ns = unique_namespace("read-only");
    let writer = manual(f.backend(&ns).await).await;
    writer.insert("flag", json!(true)).await.unwrap();
    let counting = Arc::new(CountingBackend::new(f.backend(&ns).await));
    let reader = DurableDict::<Value>::builder(counting.clone()).autosync(false).read_only(true).build().await.unwrap();
    assert_eq!(reader.snapshot().get("flag"), Some(&json!(true)), "the first load");

    // It follows changes: by hints where the store pushes them, at the next sync anyway.
    let version = writer.insert("flag", json!(false)).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while reader.version() < version {
        assert!(tokio::time::Instant::now() < deadline, "the read-only dict never caught up");
        reader.sync().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(snapshot_contents(&reader), snapshot_contents(&writer));

    let stored = store_contents(&*f.backend(&ns).await).await;
    let refused: Vec<(&str, crate::Result<()>)> = vec![
        ("insert", reader.insert("flag", json!(1)).await.map(drop)),
        ("insert_many", reader.insert_many([("a", json!(1))]).await.map(drop)),
        ("batch", reader.batch().insert("a", json!(1)).remove("flag").apply().await.map(drop)),
        ("remove", reader.remove("flag").await.map(drop)),
        ("pop", reader.pop("flag").await.map(drop)),
        ("setdefault", reader.setdefault("new", json!(1)).await.map(drop)),
        ("compare_and_swap", reader.compare_and_swap("flag", Some(&json!(false)), None).await.map(drop)),
    ];
    for (what, result) in refused {
        assert!(matches!(result, Err(Error::ReadOnly { .. })), "{what}: {result:?}");
    }
    let counts = counting.counts();
    let writes =
        counts.persist + counts.depersist + counts.apply + counts.pop + counts.setdefault + counts.compare_and_swap;
    assert_eq!(writes, 0, "a write call reached the store: {counts:?}");
    assert_eq!(store_contents(&*f.backend(&ns).await).await, stored, "the store is unchanged");
    assert_eq!(reader.snapshot().get("flag"), Some(&json!(false)), "the snapshot is unchanged");
}
