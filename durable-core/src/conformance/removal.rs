//! The suite, removing a namespace ([`Backend::remove_namespace`]): nothing of it is left,
//! its neighbours are untouched, a dict following it sees it empty, and it can be used
//! again from scratch.

use std::time::Duration;

use serde_json::json;

use super::support::{manual, snapshot_contents, store_contents};
use super::{BackendFactory, PATIENCE, unique_namespace};
use crate::backend::Backend;
use crate::journal::JournalConfig;
use crate::lease::{LeaseAnswer, LeaseOp};

/// Keys, journal records, a live lease and a version are all gone after the removal; a
/// namespace beside it keeps everything; a dict that was following it shows it empty after
/// a sync; writing again starts a new namespace at version 1 with an empty journal; and
/// removing what is not there succeeds.
pub async fn removing_a_namespace_leaves_nothing(f: &dyn BackendFactory) {
    let ns = unique_namespace("remove");
    let beside = unique_namespace("remove-beside");
    let writer = manual(f.with_journal(&ns, JournalConfig::default()).await).await;
    let follower = manual(f.backend(&ns).await).await;
    let neighbour = manual(f.backend(&beside).await).await;
    writer.insert("a", json!(1)).await.unwrap();
    writer.batch().insert("b", json!({"deep": [1, 2]})).insert("c", json!("x")).remove("a").apply().await.unwrap();
    let before = writer.insert("c", json!("y")).await.unwrap();
    neighbour.insert("kept", json!(true)).await.unwrap();
    let holder = f.backend(&ns).await;
    let granted = holder.lease("b", LeaseOp::Acquire { ttl: Duration::from_secs(60) }).await.unwrap();
    assert!(matches!(granted, LeaseAnswer::Granted(_)), "{granted:?}");
    follower.sync().await.unwrap();
    assert_eq!(follower.snapshot().len(), 2);

    f.backend(&ns).await.remove_namespace().await.expect("remove the namespace");

    let fresh = f.backend(&ns).await;
    let (entries, version) = store_contents(&*fresh).await;
    assert!(entries.is_empty(), "keys left behind: {entries:?}");
    assert_eq!(version, 0, "the version was removed too (it was {before})");
    assert_eq!(fresh.last_updated().await.unwrap(), 0);
    let page = fresh.journal(0, 100).await.unwrap();
    assert!(page.records.is_empty(), "journal records left behind: {:?}", page.records);
    assert!(fresh.history("c", 10).await.unwrap().is_empty());
    // The lease went with it: another holder gets the key at once.
    let again = fresh.lease("b", LeaseOp::Acquire { ttl: Duration::from_secs(5) }).await.unwrap();
    assert!(matches!(again, LeaseAnswer::Granted(_)), "the removed namespace's lease still holds: {again:?}");
    if let LeaseAnswer::Granted(info) = again {
        fresh.lease("b", LeaseOp::Release { token: info.token }).await.unwrap();
    }
    let (kept, kept_at) = store_contents(&*f.backend(&beside).await).await;
    assert_eq!(kept.into_iter().collect::<Vec<_>>(), vec![("kept".to_owned(), json!(true))]);
    assert_eq!(kept_at, 1, "the namespace beside it is untouched");

    if f.removal_reaches_open_handles() {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !follower.snapshot().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the follower still shows {:?}",
                snapshot_contents(&follower)
            );
            follower.sync().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Used again, it starts from scratch.
    let reborn = manual(f.with_journal(&ns, JournalConfig::default()).await).await;
    assert!(reborn.snapshot().is_empty());
    // (The lease above is a version of its own on object storage, where it is a commit.)
    let base = reborn.version();
    let written = reborn.insert("z", json!(26)).await.unwrap();
    assert_eq!(written, base + 1, "the new namespace goes on from where it stands");
    assert!(written <= 3, "a new namespace starts from scratch, not at {written}");
    let items = reborn.journal(0).await.unwrap();
    let records: Vec<_> = items.iter().filter(|item| matches!(item, crate::journal::JournalItem::Record(_))).collect();
    assert_eq!(records.len(), 1, "only the new write is journaled: {items:?}");
    let (entries, version) = store_contents(&*f.backend(&ns).await).await;
    assert_eq!((entries.into_iter().collect::<Vec<_>>(), version), (vec![("z".to_owned(), json!(26))], written));

    // Removing a namespace that is not there changes nothing and succeeds.
    f.backend(&unique_namespace("remove-absent")).await.remove_namespace().await.expect("remove an absent namespace");
    f.backend(&ns).await.remove_namespace().await.unwrap();
    f.backend(&ns).await.remove_namespace().await.expect("remove it twice");
}
