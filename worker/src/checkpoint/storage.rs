//! Where checkpoints and savepoints live: one API over every store `object_store` speaks.
//!
//! A location is a URL: `s3://bucket/prefix` (AWS, or any S3-compatible server through
//! `endpoint`), `file:///absolute/dir` or a plain path (local disk; the default is
//! `./.strom/checkpoints`), or `memory://name/prefix` (in this process only, for tests). Every file
//! is written sealed (`checkpoint::sealed`: magic header and CRC-32) and checked when read.
//!
//! Layout under the root, as DESIGN.md §4 fixes it: `<job>/chk-<n>/…` holds checkpoint `n`
//! of job `<job>`, whose `_metadata` file is written after every other file of it, so a
//! checkpoint without `_metadata` never completed. `<job>/latest` names the newest
//! completed one, for a master that starts again and has to find it. `<job>/shared/…`
//! holds the SST files of incremental RocksDB checkpoints, which several checkpoints may
//! refer to; RocksDB files are stored as they are, their CRC-32 in `_metadata`.
//! `<job>/results/<run-id>.json` holds how each run of the job (`strom master --run-id`)
//! ended (`cluster::master::results`); retention and cleanup never delete it.

use crate::checkpoint::sealed::{seal, unseal};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// The file written last into a checkpoint directory: its presence means complete.
pub const METADATA: &str = "_metadata";

/// Where checkpoints go when nothing else is configured.
pub const DEFAULT_LOCATION: &str = "./.strom/checkpoints";

/// Settings for `s3://` locations; the other schemes need none. Unset fields fall back to
/// the usual AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageOptions {
    /// An S3-compatible server, e.g. `http://127.0.0.1:9000`; none: AWS itself.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style requests (`<endpoint>/<bucket>/<key>`) instead of virtual-hosted ones
    /// (`<bucket>.<endpoint>/<key>`); none: path style exactly when `endpoint` is set, as
    /// most S3-compatible servers want.
    pub path_style: Option<bool>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// An AWS shared-credentials file (its `[default]` profile), such as a mounted Secret.
    pub credentials_file: Option<std::path::PathBuf>,
    /// How long one request may take, retries included, before it fails.
    pub request_timeout: Duration,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            endpoint: None,
            region: None,
            path_style: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            credentials_file: None,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Why storage could not be opened, read or written. Each names the location and file.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("checkpoint storage '{url}': {why}")]
    Config { url: String, why: String },
    #[error("{path} is not in {url}")]
    NotFound { url: String, path: String },
    #[error("{path} in {url} is damaged: {why}")]
    Corrupt {
        url: String,
        path: String,
        why: String,
    },
    #[error("{op} {path} in {url} failed: {message}")]
    Io {
        op: &'static str,
        url: String,
        path: String,
        message: String,
    },
}

/// Stores shared by name within the process (`memory://name`).
static MEMORY: LazyLock<Mutex<HashMap<String, Arc<InMemory>>>> = LazyLock::new(Default::default);

/// One checkpoint location (a store and a root in it).
#[derive(Clone, Debug)]
pub struct CheckpointStorage {
    store: Arc<dyn ObjectStore>,
    url: String,
}

impl CheckpointStorage {
    /// Opens the location `url` (see the module docs for the forms it takes). Nothing is
    /// contacted yet: a wrong address or credentials show at the first read or write.
    pub fn open(url: &str, options: &StorageOptions) -> Result<Self, StorageError> {
        let config = |why: String| StorageError::Config {
            url: url.to_string(),
            why,
        };
        let store: Arc<dyn ObjectStore> = if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(config("no bucket: write s3://<bucket>/<prefix>".into()));
            }
            let s3 = s3_builder(bucket, options)
                .map_err(config)?
                .build()
                .map_err(|e| config(e.to_string()))?;
            with_prefix(Arc::new(s3), prefix)
        } else if let Some(rest) = url.strip_prefix("memory://") {
            let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let mut stores = MEMORY.lock().unwrap_or_else(|p| p.into_inner());
            let store: Arc<dyn ObjectStore> = stores
                .entry(name.to_string())
                .or_insert_with(|| Arc::new(InMemory::new()))
                .clone();
            with_prefix(store, prefix)
        } else if url.contains("://") && !url.starts_with("file://") {
            return Err(config(
                "unknown scheme; use s3://bucket/prefix, file:///dir, a plain directory, or \
                 memory://name"
                    .into(),
            ));
        } else {
            let dir = url.strip_prefix("file://").unwrap_or(url);
            if dir.is_empty() {
                return Err(config("no directory".into()));
            }
            std::fs::create_dir_all(dir).map_err(|e| config(format!("creating {dir}: {e}")))?;
            // Deleting a checkpoint removes its directories too.
            Arc::new(
                LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| config(e.to_string()))?
                    .with_automatic_cleanup(true),
            )
        };
        Ok(CheckpointStorage {
            store,
            url: url.to_string(),
        })
    }

    /// The location as it was given.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn io(&self, op: &'static str, path: &str, e: object_store::Error) -> StorageError {
        match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound {
                url: self.url.clone(),
                path: path.to_string(),
            },
            other => StorageError::Io {
                op,
                url: self.url.clone(),
                path: path.to_string(),
                message: other.to_string(),
            },
        }
    }

    /// Writes `payload` sealed to `path` (relative to the root), replacing what was there.
    pub async fn put(&self, path: &str, payload: &[u8]) -> Result<(), StorageError> {
        self.store
            .put(&Path::from(path), PutPayload::from(seal(payload)))
            .await
            .map(|_| ())
            .map_err(|e| self.io("writing", path, e))
    }

    /// Writes `bytes` to `path` as they are: for files that carry their own checksums
    /// (keyed-state files seal each section).
    pub(crate) async fn put_raw(&self, path: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.store
            .put(&Path::from(path), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.io("writing", path, e))
    }

    /// Uploads the local file `local` to `path` as it is, in parts, so a file larger than
    /// memory goes up with a few parts in memory at a time. Its size and CRC-32.
    pub(crate) async fn put_file(
        &self,
        path: &str,
        local: &std::path::Path,
    ) -> Result<FileSum, StorageError> {
        use std::io::Read;
        const PART: usize = 8 << 20;
        let local_error = |e: std::io::Error| StorageError::Corrupt {
            url: self.url().to_string(),
            path: path.to_string(),
            why: format!("cannot read {} to upload it: {e}", local.display()),
        };
        let mut file = std::fs::File::open(local).map_err(local_error)?;
        let upload = self
            .store
            .put_multipart(&Path::from(path))
            .await
            .map_err(|e| self.io("writing", path, e))?;
        let mut write = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buf = vec![0; PART];
        let mut sum = FileSum::default();
        let mut crc = crc32fast::Hasher::new();
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = write.abort().await;
                    return Err(local_error(e));
                }
            };
            if let Err(e) = write.wait_for_capacity(4).await {
                return Err(self.io("writing", path, e));
            }
            crc.update(&buf[..n]);
            sum.size += n as u64;
            write.write(&buf[..n]);
        }
        write
            .finish()
            .await
            .map_err(|e| self.io("writing", path, e))?;
        sum.crc32 = crc.finalize();
        Ok(sum)
    }

    /// Streams the file at `path` (stored as it is) to the local file `local`, or only
    /// through the checksum when `local` is none; its size and CRC-32.
    pub(crate) async fn get_file(
        &self,
        path: &str,
        local: Option<&std::path::Path>,
    ) -> Result<FileSum, StorageError> {
        use futures::StreamExt;
        use std::io::Write;
        let local_error = |e: std::io::Error| StorageError::Io {
            op: "writing",
            url: "local disk".into(),
            path: local.map(|l| l.display().to_string()).unwrap_or_default(),
            message: e.to_string(),
        };
        let mut out = match local {
            Some(l) => Some(std::io::BufWriter::new(
                std::fs::File::create(l).map_err(local_error)?,
            )),
            None => None,
        };
        let mut stream = self
            .store
            .get(&Path::from(path))
            .await
            .map_err(|e| self.io("reading", path, e))?
            .into_stream();
        let mut sum = FileSum::default();
        let mut crc = crc32fast::Hasher::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.io("reading", path, e))?;
            crc.update(&chunk);
            sum.size += chunk.len() as u64;
            if let Some(out) = &mut out {
                out.write_all(&chunk).map_err(local_error)?;
            }
        }
        if let Some(out) = out {
            out.into_inner()
                .map_err(|e| local_error(e.into_error()))?
                .sync_all()
                .map_err(local_error)?;
        }
        sum.crc32 = crc.finalize();
        Ok(sum)
    }

    /// The size of the file at `path`, in bytes.
    pub(crate) async fn size(&self, path: &str) -> Result<u64, StorageError> {
        self.store
            .head(&Path::from(path))
            .await
            .map(|meta| meta.size)
            .map_err(|e| self.io("reading", path, e))
    }

    /// Byte ranges of the file at `path`, as they are (for files with their own checks).
    pub(crate) async fn get_ranges(
        &self,
        path: &str,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>, StorageError> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        self.store
            .get_ranges(&Path::from(path), ranges)
            .await
            .map_err(|e| self.io("reading", path, e))
    }

    /// The payload of the sealed file at `path`, checked.
    pub async fn get(&self, path: &str) -> Result<Vec<u8>, StorageError> {
        let bytes = self
            .store
            .get(&Path::from(path))
            .await
            .map_err(|e| self.io("reading", path, e))?
            .bytes()
            .await
            .map_err(|e| self.io("reading", path, e))?;
        unseal(&bytes)
            .map(<[u8]>::to_vec)
            .map_err(|why| StorageError::Corrupt {
                url: self.url.clone(),
                path: path.to_string(),
                why,
            })
    }

    /// Every file under `prefix` (a directory, relative to the root), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut paths: Vec<String> = self
            .store
            .list(Some(&Path::from(prefix)))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(|e| self.io("listing", prefix, e))?;
        paths.sort();
        Ok(paths)
    }

    /// Deletes the file at `path` (a file already gone is fine).
    pub async fn delete(&self, path: &str) -> Result<(), StorageError> {
        match self.store.delete(&Path::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.io("deleting", path, e)),
        }
    }

    /// Deletes every file under `prefix` (a directory).
    pub async fn delete_all(&self, prefix: &str) -> Result<(), StorageError> {
        for path in self.list(prefix).await? {
            self.delete(&path).await?;
        }
        Ok(())
    }

    /// The ids of job `job`'s checkpoints that completed (have `_metadata`), oldest first.
    pub async fn completed_checkpoints(&self, job: &str) -> Result<Vec<u64>, StorageError> {
        let mut ids: Vec<u64> = self
            .list(job)
            .await?
            .iter()
            .filter_map(|p| {
                let rest = p.strip_prefix(job)?.strip_prefix("/chk-")?;
                let (id, file) = rest.split_once('/')?;
                (file == METADATA).then(|| id.parse().ok())?
            })
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Records checkpoint `id` as job `job`'s newest completed one.
    pub async fn set_latest(&self, job: &str, id: u64) -> Result<(), StorageError> {
        self.put(&latest_path(job), id.to_string().as_bytes()).await
    }

    /// The checkpoint `set_latest` last recorded for `job`, if any.
    pub async fn latest(&self, job: &str) -> Result<Option<u64>, StorageError> {
        let path = latest_path(job);
        match self.get(&path).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes)
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| StorageError::Corrupt {
                    url: self.url.clone(),
                    path,
                    why: "not a checkpoint id".into(),
                }),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The size and CRC-32 of a file stored as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FileSum {
    pub size: u64,
    pub crc32: u32,
}

/// The directory that holds `dir` ("" for the root), as `join` builds paths.
pub(crate) fn parent_dir(dir: &str) -> &str {
    dir.trim_end_matches('/')
        .rsplit_once('/')
        .map_or("", |(parent, _)| parent)
}

/// `name` in directory `dir` (the root when `dir` is empty).
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The directory of checkpoint `id` of job `job`.
pub fn checkpoint_dir(job: &str, id: u64) -> String {
    format!("{job}/chk-{id}")
}

fn latest_path(job: &str) -> String {
    format!("{job}/latest")
}

fn with_prefix(store: Arc<dyn ObjectStore>, prefix: &str) -> Arc<dyn ObjectStore> {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    }
}

/// The S3 client for `bucket`: the AWS environment, then `options` over it.
fn s3_builder(bucket: &str, options: &StorageOptions) -> Result<AmazonS3Builder, String> {
    // Client options first: setting them replaces every earlier client setting.
    let client = ClientOptions::new()
        .with_timeout(options.request_timeout)
        .with_connect_timeout(Duration::from_secs(5))
        .with_allow_http(
            options
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
        );
    let retry = RetryConfig {
        retry_timeout: options.request_timeout,
        ..RetryConfig::default()
    };
    let mut builder = AmazonS3Builder::from_env()
        .with_client_options(client)
        .with_retry(retry)
        .with_bucket_name(bucket);
    if let Some(endpoint) = &options.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let path_style = options.path_style.unwrap_or(options.endpoint.is_some());
    builder = builder.with_virtual_hosted_style_request(!path_style);
    if let Some(region) = &options.region {
        builder = builder.with_region(region);
    }
    if let Some(file) = &options.credentials_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("credentials file {}: {e}", file.display()))?;
        let (id, secret, token) = parse_credentials_file(&text)
            .map_err(|why| format!("credentials file {}: {why}", file.display()))?;
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret);
        if let Some(token) = token {
            builder = builder.with_token(token);
        }
    }
    if let Some(id) = &options.access_key_id {
        builder = builder.with_access_key_id(id);
    }
    if let Some(secret) = &options.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    if let Some(token) = &options.session_token {
        builder = builder.with_token(token);
    }
    Ok(builder)
}

type Credentials = (String, String, Option<String>);

/// The `[default]` profile of an AWS shared-credentials file (INI: `aws_access_key_id`,
/// `aws_secret_access_key`, optional `aws_session_token`).
fn parse_credentials_file(text: &str) -> Result<Credentials, String> {
    let mut profile = None;
    let mut values: HashMap<&str, &str> = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            profile = Some(name.trim());
            continue;
        }
        if profile.is_some_and(|p| p != "default") {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            values.insert(key.trim(), value.trim());
        }
    }
    let need = |key: &str| {
        values
            .get(key)
            .map(|v| v.to_string())
            .ok_or_else(|| format!("no {key} in its [default] profile"))
    };
    Ok((
        need("aws_access_key_id")?,
        need("aws_secret_access_key")?,
        values.get("aws_session_token").map(|v| v.to_string()),
    ))
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

    #[test]
    fn files_come_back_and_completed_checkpoints_are_found() {
        let tmp = std::env::temp_dir().join(format!("strom-storage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let file_url = format!("file://{}", tmp.display());
        for url in ["memory://storage-test", file_url.as_str()] {
            let storage = CheckpointStorage::open(url, &StorageOptions::default()).expect("opens");
            block_on(async {
                for id in [1, 2, 10] {
                    let dir = checkpoint_dir("job", id);
                    storage
                        .put(&format!("{dir}/op-1/0"), b"state")
                        .await
                        .expect("put");
                    storage
                        .put(&format!("{dir}/{METADATA}"), b"meta")
                        .await
                        .expect("put");
                }
                // Checkpoint 3 never completed: no _metadata.
                storage.put("job/chk-3/op-1/0", b"half").await.expect("put");
                storage.set_latest("job", 10).await.expect("put");
                assert_eq!(
                    storage.completed_checkpoints("job").await.expect("lists"),
                    [1, 2, 10]
                );
                assert_eq!(storage.latest("job").await.expect("reads"), Some(10));
                assert_eq!(storage.latest("other").await.expect("reads"), None);
                assert_eq!(
                    storage.get("job/chk-2/op-1/0").await.expect("reads"),
                    b"state"
                );
                let missing = storage
                    .get("job/chk-4/_metadata")
                    .await
                    .expect_err("missing");
                assert!(
                    matches!(missing, StorageError::NotFound { .. }),
                    "{missing}"
                );
                storage.delete_all("job/chk-1").await.expect("deletes");
                assert_eq!(
                    storage.completed_checkpoints("job").await.expect("lists"),
                    [2, 10]
                );
            });
        }
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn a_damaged_file_is_reported_as_such() {
        let tmp = std::env::temp_dir().join(format!("strom-damaged-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let storage = CheckpointStorage::open(tmp.to_str().expect("utf-8"), &Default::default())
            .expect("opens");
        block_on(storage.put("job/chk-1/_metadata", b"metadata")).expect("put");
        let file = tmp.join("job/chk-1/_metadata");
        let mut bytes = std::fs::read(&file).expect("written");
        bytes.truncate(bytes.len() - 2);
        std::fs::write(&file, bytes).expect("damaged");
        let e = block_on(storage.get("job/chk-1/_metadata")).expect_err("damaged");
        let message = e.to_string();
        assert!(matches!(e, StorageError::Corrupt { .. }), "{message}");
        assert!(
            message.contains("job/chk-1/_metadata") && message.contains("checksum"),
            "{message}"
        );
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn bad_locations_say_how_to_write_them() {
        let e = CheckpointStorage::open("gs://bucket/x", &Default::default()).expect_err("bad");
        assert!(e.to_string().contains("s3://bucket/prefix"), "{e}");
        let e = CheckpointStorage::open("s3:///x", &Default::default()).expect_err("bad");
        assert!(e.to_string().contains("no bucket"), "{e}");
        let s3 = CheckpointStorage::open(
            "s3://checkpoints/jobs",
            &StorageOptions {
                endpoint: Some("http://127.0.0.1:1".into()),
                access_key_id: Some("id".into()),
                secret_access_key: Some("secret".into()),
                ..Default::default()
            },
        );
        assert!(s3.is_ok(), "{s3:?}");
    }

    #[test]
    fn the_default_profile_of_a_credentials_file_is_read() {
        let text = "# comment\n[other]\naws_access_key_id = no\n\n[default]\n\
                    aws_access_key_id = AKIA1\naws_secret_access_key=s3cret\n";
        assert_eq!(
            parse_credentials_file(text),
            Ok(("AKIA1".into(), "s3cret".into(), None))
        );
        let e = parse_credentials_file("[default]\naws_access_key_id = x\n").expect_err("half");
        assert!(e.contains("aws_secret_access_key"), "{e}");
    }
}
