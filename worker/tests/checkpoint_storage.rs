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

/// The lines of the part files in `dir` (sorted), and their bytes.
fn output(dir: &std::path::Path) -> (Vec<String>, u64) {
    let mut lines = Vec::new();
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("part-") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            bytes += text.len() as u64;
            lines.extend(text.lines().map(String::from));
        }
    }
    lines.sort();
    (lines, bytes)
}

#[test]
fn a_job_goes_on_through_a_20_second_s3_outage_and_checkpoints_again_after_it() {
    const STROM: &str = env!("CARGO_BIN_EXE_strom");
    let tmp = common::TempDir::new("s3-outage");
    let dir = tmp.path();
    let job = |out: &std::path::Path| -> Vec<String> {
        [
            "run",
            "word-count",
            "--parallelism",
            "2",
            "--arg",
            "events=12000",
            "--arg",
            &format!("output={}", out.display()),
            "--no-summary",
        ]
        .map(String::from)
        .to_vec()
    };
    let status = std::process::Command::new(STROM)
        .args(job(&dir.join("alone")))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let (expected, _) = output(&dir.join("alone"));

    let server = S3Server::start();
    server.create_bucket("checkpoints");
    let out = dir.join("out");
    // 12,000 lines at 400 a second: 30 s, through an outage of 20.
    let mut child = std::process::Command::new(STROM)
        .args(job(&out))
        .args(["--arg", "rate=400", "--checkpoint-interval-ms", "300"])
        .args([
            "--checkpoint-timeout-ms",
            "2000",
            "--s3-request-timeout-ms",
            "2000",
        ])
        .args(["--checkpoint-dir", "s3://checkpoints/jobs"])
        .args([
            "--s3-endpoint",
            &server.endpoint,
            "--s3-region",
            "us-east-1",
        ])
        .args([
            "--s3-access-key-id",
            "test",
            "--s3-secret-access-key",
            "test",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let storage = CheckpointStorage::open(
        "s3://checkpoints/jobs",
        &options(&server, Duration::from_secs(5)),
    )
    .unwrap();
    let latest = || block_on(storage.latest("word-count")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while latest().is_none() {
        assert!(Instant::now() < deadline, "no checkpoint before the outage");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = latest();

    server.pause();
    let (_, at_start) = output(&out);
    std::thread::sleep(Duration::from_secs(20));
    let (_, at_end) = output(&out);
    server.resume();
    assert!(
        at_end > at_start,
        "the job stopped writing while S3 was down ({at_start} -> {at_end} bytes)"
    );
    // Checkpoints complete again while the job still runs.
    let deadline = Instant::now() + Duration::from_secs(8);
    while latest() <= before {
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "no checkpoint completed after the outage (latest {:?})",
            latest()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("checkpoint expired") || stderr.contains("could not write its state"),
        "no checkpoint failed during the outage:\n{stderr}"
    );
    // Nothing lost (and, without a restart, nothing twice).
    let (got, _) = output(&out);
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);
}
