//! Checkpoint storage against a real S3-compatible server (moto's, on loopback): files
//! come back checked, completed checkpoints are found, a damaged file is reported, and an
//! unreachable server fails a request within its timeout instead of hanging, then works
//! again when it is back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::s3::S3Server;
use std::time::{Duration, Instant};
use strom::checkpoint::storage::{
    CheckpointStorage, METADATA, StorageError, StorageOptions, checkpoint_dir,
};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn options(server: &S3Server, timeout: Duration) -> StorageOptions {
    StorageOptions {
        endpoint: Some(server.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        request_timeout: timeout,
        ..StorageOptions::default()
    }
}

#[test]
fn checkpoints_in_s3_are_written_found_checked_and_survive_an_outage() {
    let server = S3Server::start();
    server.create_bucket("checkpoints");
    let storage = CheckpointStorage::open(
        "s3://checkpoints/team-a",
        &options(&server, Duration::from_secs(3)),
    )
    .unwrap();
    block_on(async {
        for id in [4, 5] {
            let dir = checkpoint_dir("fraud", id);
            storage
                .put(&format!("{dir}/op/0"), b"keyed state")
                .await
                .unwrap();
            storage
                .put(&format!("{dir}/{METADATA}"), b"meta")
                .await
                .unwrap();
        }
        storage
            .put("fraud/chk-6/op/0", b"never completed")
            .await
            .unwrap();
        storage.set_latest("fraud", 5).await.unwrap();
        assert_eq!(
            storage.completed_checkpoints("fraud").await.unwrap(),
            [4, 5]
        );
        assert_eq!(storage.latest("fraud").await.unwrap(), Some(5));
        assert_eq!(
            storage.get("fraud/chk-5/op/0").await.unwrap(),
            b"keyed state"
        );
    });

    // Someone overwrites a file with other bytes: reading it says it is damaged.
    use object_store::ObjectStore;
    let raw = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&server.endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name("checkpoints")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    block_on(raw.put(
        &object_store::path::Path::from("team-a/fraud/chk-5/op/0"),
        b"not ours".to_vec().into(),
    ))
    .unwrap();
    let e = block_on(storage.get("fraud/chk-5/op/0")).unwrap_err();
    assert!(matches!(e, StorageError::Corrupt { .. }), "{e}");

    // The server stops answering: a write fails within the timeout (retries included).
    server.pause();
    let started = Instant::now();
    let e = block_on(storage.put("fraud/chk-7/op/0", b"state")).unwrap_err();
    let took = started.elapsed();
    server.resume();
    assert!(matches!(e, StorageError::Io { .. }), "{e}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    // And it is back.
    block_on(storage.put("fraud/chk-7/op/0", b"state")).unwrap();
    assert_eq!(block_on(storage.get("fraud/chk-7/op/0")).unwrap(), b"state");
    block_on(storage.delete_all("fraud/chk-4")).unwrap();
    assert_eq!(
        block_on(storage.completed_checkpoints("fraud")).unwrap(),
        [5]
    );
}
