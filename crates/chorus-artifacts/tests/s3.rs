#![allow(clippy::unwrap_used)]
//! The S3 path against a local S3 emulator: `moto` in server mode (installed into .venv by
//! `scripts/setup --dev`), started by the test. An emulator, not AWS: it shows that the requests, the conditional
//! writes (`If-None-Match: *`, `If-Match`) and the listing work against an S3 wire implementation.

mod moto;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use chorus_artifacts::{ArtifactError, ArtifactStore, DocKind};
use moto::Moto;

fn moto() -> Moto {
    Moto::start(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

fn open(port: u16, bucket: &str) -> ArtifactStore {
    let endpoint = format!("http://127.0.0.1:{port}");
    ArtifactStore::open_with_options(
        &format!("s3://{bucket}/chorus/prod"),
        &[
            ("aws_endpoint", endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
            ("aws_region", "us-east-1"),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_conditional_writes_listing_and_polling() {
    let moto = moto();
    assert_eq!(moto.request("PUT", "/artifacts", "").unwrap().0, 200);
    let (a, b) = (open(moto.port, "artifacts"), open(moto.port, "artifacts"));
    assert!(!a.is_local());

    let etag = a.create(DocKind::Voice, "v1", Bytes::from_static(b"{\"n\":1}")).await.unwrap();
    assert!(matches!(
        b.create(DocKind::Voice, "v1", Bytes::from_static(b"{}")).await,
        Err(ArtifactError::AlreadyExists(_))
    ));
    let etag2 = a.update(DocKind::Voice, "v1", Bytes::from_static(b"{\"n\":2}"), &etag).await.unwrap();
    assert!(matches!(
        b.update(DocKind::Voice, "v1", Bytes::from_static(b"{\"n\":3}"), &etag).await,
        Err(ArtifactError::Conflict(_))
    ));
    let got = b.get(DocKind::Voice, "v1").await.unwrap().unwrap();
    assert_eq!((&got.bytes[..], got.etag.as_str()), (&b"{\"n\":2}"[..], etag2.as_str()));

    // Keys live under the prefix; the listing gives ids and versions.
    let (status, listing) = moto.request("GET", "/artifacts?list-type=2", "").unwrap();
    assert_eq!(status, 200);
    assert!(listing.contains("<Key>chorus/prod/voices/v1.json</Key>"), "{listing}");
    let listed = b.list(DocKind::Voice).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id.as_str(), listed[0].etag.as_str()), ("v1", etag2.as_str()));

    // A bucket is polled: the watcher wakes every interval, and a listing then shows an object put by someone else.
    let mut watcher = b.watcher(Duration::from_millis(200));
    assert!(!watcher.notifies());
    watcher.changed().await;
    let (status, _) =
        moto.request("PUT", "/artifacts/chorus/prod/pronunciation-dicts/d1.json", "{}").unwrap();
    assert_eq!(status, 200);
    tokio::time::timeout(Duration::from_secs(5), watcher.changed()).await.unwrap();
    let dicts = b.list(DocKind::Dict).await.unwrap();
    assert_eq!(dicts.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["d1"]);

    // Migration markers: exactly one claim wins.
    assert!(a.claim_migration("m1", Bytes::from_static(b"{}")).await.unwrap().is_some());
    assert!(b.claim_migration("m1", Bytes::from_static(b"{}")).await.unwrap().is_none());

    a.delete(DocKind::Voice, "v1", Some(&etag2)).await.unwrap();
    assert!(b.get(DocKind::Voice, "v1").await.unwrap().is_none());
    assert!(matches!(
        b.update(DocKind::Voice, "v1", Bytes::from_static(b"{}"), &etag2).await,
        Err(ArtifactError::NotFound(_))
    ));
}

#[test]
fn bad_locations_are_refused() {
    for bad in ["", "s3://", "gs://", "ftp://x/y"] {
        assert!(ArtifactStore::open(bad).is_err(), "{bad:?}");
    }
}
