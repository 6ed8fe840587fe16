//! The suite, archives and restore: a namespace rebuilt at sampled versions from the
//! archive plus the live journal equals a model the test kept.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::json;

use super::support::manual;
use super::{BackendFactory, unique_namespace};
use crate::archive::{ArchiveError, ArchiveOptions, Archiver, restore};
use crate::backend::Version;
use crate::journal::{GapCause, JournalConfig};

fn encoded(value: &serde_json::Value) -> Bytes {
    crate::codec::Codec::encode(&crate::Json, value).expect("encode")
}

/// Random writes from one dict while the test keeps a model of every version; half-way the
/// journal is drained into an archive (small files, so it rolls over). Restoring 5 sampled
/// versions — some only in the archive, some only in the live journal, the last — into
/// another namespace of the same store gives exactly the model at that version; a version
/// past the namespace's is refused, and so is one behind a gap.
pub async fn restore_rebuilds_the_namespace_at_any_version(f: &dyn BackendFactory) {
    let ns = unique_namespace("restore");
    let source = f.with_journal(&ns, JournalConfig::default()).await;
    let dict = manual(source.clone()).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut archiver = Archiver::open(dir.path(), ArchiveOptions::default().max_file_bytes(512)).expect("archiver");
    let mut rng = fastrand::Rng::with_seed(7);
    let mut model: BTreeMap<String, Bytes> = BTreeMap::new();
    let mut models: BTreeMap<Version, BTreeMap<String, Bytes>> = BTreeMap::new();
    for i in 0..120u32 {
        let key = format!("k{}", rng.u8(0..12));
        let value = json!({ "i": i, "text": "ü".repeat(i as usize % 5) });
        let removing = rng.u8(0..4) == 0;
        let version = if removing {
            dict.remove(&key).await.unwrap()
        } else {
            Some(dict.insert(&key, value.clone()).await.unwrap())
        };
        let value = (!removing).then_some(value);
        if let Some(version) = version {
            match value.map(|value| encoded(&value)) {
                Some(bytes) => model.insert(key, bytes),
                None => model.remove(&key),
            };
            models.insert(version, model.clone());
        }
        if i == 60 {
            assert!(archiver.drain(&*source).await.unwrap() > 0);
        }
    }
    archiver.sync().unwrap();
    let archived = archiver.after();
    let last = *models.keys().last().unwrap();
    let versions: Vec<Version> = models.keys().copied().collect();
    let samples = [versions[3], archived / 2, archived, versions[versions.len() - 10], last];
    for version in samples {
        let target_ns = unique_namespace("restored");
        let target = f.backend(&target_ns).await;
        // Something already there that the restore must remove.
        target.persist("stale", Bytes::from_static(b"1")).await.unwrap();
        let restored = restore(Some(dir.path()), &*source, version, &*target).await.unwrap();
        assert_eq!(restored.version, version);
        let got: BTreeMap<String, Bytes> = target.durables().await.unwrap().entries.into_iter().collect();
        assert_eq!(&got, &models[&version], "restored version {version} (archived through {archived})");
        if version <= archived {
            assert_eq!(restored.from_journal, 0, "version {version} comes from the archive alone");
        }
    }
    // Without the archive, from the journal alone.
    let target = f.backend(&unique_namespace("restored")).await;
    restore(None, &*source, last, &*target).await.unwrap();
    let got: BTreeMap<String, Bytes> = target.durables().await.unwrap().entries.into_iter().collect();
    assert_eq!(got, models[&last]);
    // Past the namespace's version.
    let refused = restore(Some(dir.path()), &*source, last + 5, &*target).await;
    assert!(
        matches!(refused, Err(ArchiveError::NotYet { wanted, available }) if wanted == last + 5 && available == last)
    );
    // Behind a writer that kept no journal.
    let silent = manual(f.with_journal(&ns, JournalConfig::off()).await).await;
    silent.insert("silent", json!(1)).await.unwrap();
    dict.insert("after", json!(2)).await.unwrap();
    let refused = restore(Some(dir.path()), &*source, last + 2, &*target).await;
    match refused {
        Err(ArchiveError::Gap { gap, .. }) => {
            assert_eq!((gap.after, gap.before, gap.cause), (last, last + 2, GapCause::NotJournaled))
        }
        other => panic!("want a gap, got {other:?}"),
    }
}
