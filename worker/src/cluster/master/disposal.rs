//! Savepoint disposal (`POST /v1/savepoint-disposal`, `strom savepoint dispose`; Flink's
//! savepoint disposal): Strom never deletes a savepoint on its own, so the operator asks
//! the master to drop the ones beyond `savepoints.keep`. The master deletes through the
//! storage its checkpoints use (its `--s3-*` settings), and only what is plainly a
//! savepoint or checkpoint of Strom: a directory whose `_metadata` Strom wrote (sealed,
//! of a format this binary reads), with no other checkpoint nested inside it. Anything
//! else is refused and nothing is deleted.
//!
//! Only the files under the directory go: the shared SST files of incremental RocksDB
//! checkpoints (`<job>/shared/…`) are outside it and may be used by other checkpoints.
//! `_metadata` goes last, so a disposal cut short can be asked for again (a directory
//! without all its files but with `_metadata` fails the check a restore makes).

use crate::checkpoint::restore::read_metadata;
use crate::checkpoint::storage::{CheckpointStorage, METADATA, StorageError, StorageOptions};

/// Why a disposal was refused or failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DisposalError {
    /// The location is not one a savepoint can be at, or holds something else (400).
    Invalid(String),
    /// Nothing is there to dispose of (404).
    NotFound(String),
    /// Storage could not be read or written (500); some files may be deleted already.
    Storage(String),
}

/// Whether `location` is on local disk (a plain path or `file://`).
fn local_dir(location: &str) -> Option<&str> {
    if let Some(path) = location.strip_prefix("file://") {
        Some(path)
    } else if location.contains("://") {
        None
    } else {
        Some(location)
    }
}

/// Deletes the savepoint or checkpoint in directory `location`; how many files went.
pub(crate) async fn dispose(
    location: &str,
    options: &StorageOptions,
) -> Result<usize, DisposalError> {
    let location = location.trim();
    if location.is_empty() {
        return Err(DisposalError::Invalid(
            "location is empty: give the savepoint's directory, e.g. \
             {\"location\": \"s3://bucket/savepoints/savepoint-word-count-7\"}"
                .into(),
        ));
    }
    if let Some(dir) = local_dir(location) {
        // Opening a local location creates its directory: check first, so that a wrong
        // path leaves nothing behind.
        if !std::path::Path::new(dir).is_dir() {
            return Err(DisposalError::NotFound(format!(
                "location '{location}' is not a directory on the master's disk; give the \
                 savepoint's directory (savepoint-…) or a checkpoint's (chk-<n>)"
            )));
        }
    }
    let storage = CheckpointStorage::open(location, options).map_err(|e| {
        DisposalError::Invalid(format!("location '{location}': {e}; nothing was deleted"))
    })?;
    match read_metadata(&storage, "").await {
        Ok(_) => {}
        Err(StorageError::NotFound { .. }) => {
            return Err(DisposalError::NotFound(format!(
                "location '{location}' holds no {METADATA}: it is not a savepoint or a \
                 completed checkpoint (give the savepoint-… or chk-<n> directory itself); \
                 nothing was deleted"
            )));
        }
        Err(e @ StorageError::Corrupt { .. }) => {
            return Err(DisposalError::Invalid(format!(
                "location '{location}': its {METADATA} is not one Strom wrote ({e}); nothing \
                 was deleted"
            )));
        }
        Err(e) => {
            return Err(DisposalError::Storage(format!(
                "location '{location}': {e}; nothing was deleted"
            )));
        }
    }
    let files = storage
        .list("")
        .await
        .map_err(|e| DisposalError::Storage(format!("location '{location}': {e}")))?;
    // A directory that holds other checkpoints (a job's, or a savepoints directory with
    // a stray _metadata) is not one savepoint.
    if let Some(nested) = files
        .iter()
        .find(|f| f.as_str() != METADATA && f.ends_with(&format!("/{METADATA}")))
    {
        return Err(DisposalError::Invalid(format!(
            "location '{location}' holds another checkpoint ({nested}): give one savepoint's \
             directory; nothing was deleted"
        )));
    }
    let mut deleted = 0;
    for file in files.iter().filter(|f| f.as_str() != METADATA) {
        storage.delete(file).await.map_err(|e| {
            DisposalError::Storage(format!(
                "location '{location}': {e} ({deleted} files deleted; ask again to finish)"
            ))
        })?;
        deleted += 1;
    }
    storage.delete(METADATA).await.map_err(|e| {
        DisposalError::Storage(format!(
            "location '{location}': {e} ({deleted} files deleted; ask again to finish)"
        ))
    })?;
    deleted += 1;
    if let Some(dir) = local_dir(location) {
        // The store removes the directories it emptied below the location, not the
        // location itself; it may hold files of others, then it stays.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    fn metadata_json() -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "format": crate::checkpoint::metadata::FORMAT_VERSION,
            "id": 7, "job": "word-count", "timestamp_ms": 1, "max_parallelism": 128,
            "operators": [],
        }))
        .expect("json")
    }

    #[test]
    fn a_savepoint_goes_and_anything_else_is_refused() {
        let options = StorageOptions::default();
        let root = CheckpointStorage::open("memory://disposal", &options).expect("opens");
        block_on(async {
            root.put("sp/savepoint-wc-7/_metadata", &metadata_json())
                .await
                .expect("writes");
            root.put("sp/savepoint-wc-7/op/0.state", b"state")
                .await
                .expect("writes");
            root.put("sp/savepoint-wc-7/op/1.state", b"state")
                .await
                .expect("writes");
            root.put("sp/other/file", b"x").await.expect("writes");
            root.put_raw("fake/_metadata", b"{}".to_vec())
                .await
                .expect("writes");

            // Not a savepoint: nothing there, a parent of one, a foreign _metadata.
            let e = dispose("memory://disposal/sp/nothing", &options).await;
            assert!(
                matches!(&e, Err(DisposalError::NotFound(m)) if m.contains("location 'memory://disposal/sp/nothing'")),
                "{e:?}"
            );
            let e = dispose("memory://disposal/sp", &options).await;
            assert!(
                matches!(&e, Err(DisposalError::NotFound(m)) if m.contains("holds no _metadata")),
                "{e:?}"
            );
            let e = dispose("memory://disposal/fake", &options).await;
            assert!(
                matches!(&e, Err(DisposalError::Invalid(m)) if m.contains("not one Strom wrote")),
                "{e:?}"
            );
            let e = dispose("", &options).await;
            assert!(
                matches!(&e, Err(DisposalError::Invalid(m)) if m.contains("location is empty")),
                "{e:?}"
            );
            assert_eq!(root.list("").await.expect("lists").len(), 5);

            assert_eq!(
                dispose("memory://disposal/sp/savepoint-wc-7/", &options).await,
                Ok(3)
            );
            assert_eq!(
                root.list("").await.expect("lists"),
                ["fake/_metadata", "sp/other/file"]
            );
        });
    }

    #[test]
    fn a_directory_holding_other_checkpoints_is_not_one_savepoint() {
        let options = StorageOptions::default();
        let root = CheckpointStorage::open("memory://disposal-nested", &options).expect("opens");
        block_on(async {
            root.put("job/_metadata", &metadata_json())
                .await
                .expect("writes");
            root.put("job/chk-3/_metadata", &metadata_json())
                .await
                .expect("writes");
            let e = dispose("memory://disposal-nested/job", &options).await;
            assert!(
                matches!(&e, Err(DisposalError::Invalid(m)) if m.contains("chk-3/_metadata")),
                "{e:?}"
            );
            assert_eq!(root.list("").await.expect("lists").len(), 2);
        });
    }

    #[test]
    fn a_missing_local_directory_is_not_created() {
        let dir = std::env::temp_dir().join(format!("strom-disposal-{}", std::process::id()));
        let location = dir.join("savepoint-x").display().to_string();
        let e = block_on(dispose(&location, &StorageOptions::default()));
        assert!(matches!(e, Err(DisposalError::NotFound(_))), "{e:?}");
        assert!(!dir.exists());
    }
}
