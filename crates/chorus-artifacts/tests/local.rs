#![allow(clippy::unwrap_used)]
//! The local-directory store: conditional writes between independent openers of one directory (as two API
//! servers would be), listing, notifications.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chorus_artifacts::{ArtifactError, ArtifactStore, DocKind};

fn open(dir: &tempfile::TempDir) -> ArtifactStore {
    ArtifactStore::open(dir.path().to_str().unwrap()).unwrap()
}

#[tokio::test]
async fn create_update_delete_are_conditional() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(&dir), open(&dir));
    let etag = a.create(DocKind::Voice, "v1", Bytes::from_static(b"{\"n\":1}")).await.unwrap();
    assert!(matches!(
        b.create(DocKind::Voice, "v1", Bytes::from_static(b"{}")).await,
        Err(ArtifactError::AlreadyExists(_))
    ));
    let got = b.get(DocKind::Voice, "v1").await.unwrap().unwrap();
    assert_eq!(got.etag, etag);
    assert_eq!(&got.bytes[..], b"{\"n\":1}");

    // A updates from the version both read; B's update from that same version must now fail.
    let etag2 = a.update(DocKind::Voice, "v1", Bytes::from_static(b"{\"n\":2}"), &etag).await.unwrap();
    assert_ne!(etag2, etag);
    assert!(matches!(
        b.update(DocKind::Voice, "v1", Bytes::from_static(b"{\"n\":3}"), &etag).await,
        Err(ArtifactError::Conflict(_))
    ));
    assert!(matches!(b.delete(DocKind::Voice, "v1", Some(&etag)).await, Err(ArtifactError::Conflict(_))));
    assert_eq!(&b.get(DocKind::Voice, "v1").await.unwrap().unwrap().bytes[..], b"{\"n\":2}");

    let listed = b.list(DocKind::Voice).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id.as_str(), listed[0].etag.as_str()), ("v1", etag2.as_str()));
    assert_eq!(listed[0].path, "voices/v1.json");
    assert!(b.list(DocKind::Dict).await.unwrap().is_empty());

    b.delete(DocKind::Voice, "v1", Some(&etag2)).await.unwrap();
    assert!(a.get(DocKind::Voice, "v1").await.unwrap().is_none());
    assert!(matches!(
        a.update(DocKind::Voice, "v1", Bytes::from_static(b"{}"), &etag2).await,
        Err(ArtifactError::NotFound(_))
    ));
    assert!(matches!(a.delete(DocKind::Voice, "v1", None).await, Err(ArtifactError::NotFound(_))));
    assert!(matches!(a.get(DocKind::Voice, "../x").await, Err(ArtifactError::InvalidId(_))));
}

/// Many writers start from the same version at once: exactly one wins, every other one is told so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_from_one_version_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(&dir);
    let etag = first.create(DocKind::Dict, "d", Bytes::from_static(b"0")).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (store, etag, barrier) = (open(&dir), etag.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store.update(DocKind::Dict, "d", Bytes::from(format!("{i}")), &etag).await
            })
        })
        .collect();
    let mut won = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(_) => won.push(i),
            Err(ArtifactError::Conflict(_)) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(won.len(), 1, "winners: {won:?}");
    let body = first.get(DocKind::Dict, "d").await.unwrap().unwrap().bytes;
    assert_eq!(body, Bytes::from(format!("{}", won[0])));
}

#[tokio::test]
async fn listing_skips_foreign_files_and_migration_markers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    std::fs::write(dir.path().join("voices/notes.txt"), "x").unwrap();
    std::fs::create_dir_all(dir.path().join("voices/sub")).unwrap();
    std::fs::write(dir.path().join("voices/sub/y.json"), "{}").unwrap();
    std::fs::write(dir.path().join("voices/ok.json"), "{}").unwrap();
    let ids: Vec<String> = store.list(DocKind::Voice).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["ok"]);

    store.put_migration("m1", Bytes::from_static(b"{}\n")).await.unwrap();
    assert!(!store.migration_claimed("m1").await.unwrap());
    assert!(store.claim_migration("m1", Bytes::from_static(b"{}")).await.unwrap().is_some());
    assert!(store.claim_migration("m1", Bytes::from_static(b"{}")).await.unwrap().is_none());
    assert!(store.migration_claimed("m1").await.unwrap());
    let names: Vec<String> = store.list_migrations().await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(names, ["m1"]);
}

#[tokio::test]
async fn a_file_written_by_hand_wakes_the_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    // A long poll interval: only the notification can wake it in time.
    let mut watcher = store.watcher(Duration::from_secs(3600));
    assert!(watcher.notifies());
    watcher.changed().await; // the first tick is immediate
    let path = dir.path().join("pronunciation-dicts/x.json");
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        std::fs::write(path, "{}").unwrap();
    });
    tokio::time::timeout(Duration::from_secs(10), watcher.changed()).await.unwrap();
    writer.await.unwrap();
}
