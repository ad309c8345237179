//! The RocksDB state backend (Flink's `EmbeddedRocksDBStateBackend`): keyed state that
//! lives on local disk, so it can be much larger than memory.
//!
//! Each keyed operator subtask has its own RocksDB instance in a directory of its own
//! under its process's directory in the state directory, deleted when the subtask ends
//! (a restore rebuilds it from the checkpoint); what a killed process left behind is
//! deleted by the next process of the host that opens an instance there. Every instance
//! of a process shares one block cache and one write buffer manager charged to it, so
//! the memory budget holds for the process as a whole
//! (half of it for memtables, as Flink's `write-buffer-ratio` of 0.5). There is no
//! write-ahead log: checkpoints are what make state durable.
//!
//! Layout of a key: table id (2 bytes), key group (2 bytes), a hash of the key's bytes
//! (4 bytes), length of the key (4 bytes), the key and the namespace, both in the
//! canonical encoding (MessagePack, as snapshots write them), so a key group is one
//! contiguous range and a snapshot copies the bytes as they are. The first 8 bytes are
//! the memtable's hash prefix: a read of a key looks in a bucket of its own instead of
//! one skip list of every key. Values are updated in place in the memtable, so a key
//! usually has one version there, not one per record. A value is a tag byte (`0`: no
//! expiry; `1`: an 8-byte expiry follows) and the canonical encoding of the value, so
//! entries can be read, restored and snapshotted without their types. Timers stay on
//! the heap. Each state keeps a small cache of decoded values in front of RocksDB
//! (written through, so RocksDB always holds the state; 1/64 of the memory budget each,
//! on top of it).
//!
//! A checkpoint takes a RocksDB checkpoint (hard links to the instance's SST files after
//! a memtable flush) at the barrier, which is quick ([`RocksCheckpoint`]). Off the task's
//! thread, the uploader then either uploads its files, skipping SST files an earlier
//! checkpoint of the instance uploaded (incremental, the default for checkpoints), or
//! reads it key group by key group into the canonical keyed-state file, one key group in
//! memory at a time (savepoints, and `incremental: false`). An incremental checkpoint
//! restores by downloading the files into a new instance when the key groups are the
//! same, and is read entry by entry otherwise (another parallelism or backend).

use crate::checkpoint::metadata::StateFile;
use crate::keygroup::KeyGroupRange;
use crate::record::{Data, Key};
use crate::runtime::context::Clock;
use crate::state::heap::{Expiry, KeyContext, NsTable, TableKeys};
use crate::state::snapshot::{KeyGroupSnapshot, RawEntry, decode, encode};
use crate::state::ttl::{StateTtlConfig, TtlUpdateType, TtlVisibility};
use rocksdb::{
    BlockBasedOptions, Cache, DB, IteratorMode, Options, ReadOptions, WriteBufferManager,
    WriteOptions,
};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};

/// Where RocksDB instances go and how much memory they may use together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RocksDbConfig {
    /// Each subtask's instance is a directory under it.
    pub dir: PathBuf,
    /// Block cache and memtables of every instance in this process, in bytes; each state
    /// of each instance also caches up to 1/64 of it in decoded values.
    pub memory_budget: usize,
    /// Checkpoints upload only the SST files earlier checkpoints did not (savepoints are
    /// always whole, in the canonical format).
    pub incremental: bool,
}

impl Default for RocksDbConfig {
    fn default() -> Self {
        RocksDbConfig {
            dir: std::env::temp_dir().join("strom-rocksdb"),
            memory_budget: 256 << 20,
            incremental: true,
        }
    }
}

/// The cache and write buffer manager every instance of this process shares.
fn shared_memory(budget: usize) -> (Cache, WriteBufferManager) {
    static SHARED: OnceLock<Mutex<Option<(usize, Cache, WriteBufferManager)>>> = OnceLock::new();
    let mut shared = SHARED
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    match shared.as_ref() {
        Some((b, cache, wbm)) => {
            if *b != budget {
                tracing::warn!(
                    budget_bytes = *b,
                    asked_bytes = budget,
                    "RocksDB instances of this process share the memory budget they were first given"
                );
            }
            (cache.clone(), wbm.clone())
        }
        None => {
            let cache = Cache::new_lru_cache(budget);
            let wbm = WriteBufferManager::new_write_buffer_manager_with_cache(
                budget / 2,
                false,
                cache.clone(),
            );
            *shared = Some((budget, cache.clone(), wbm.clone()));
            (cache, wbm)
        }
    }
}

/// This process's directory under the state directory `root`, which holds its instances
/// and their checkpoints: `<host>-<pid>-<start>`. The first call for a root deletes the
/// directories that processes of this host left behind when they were killed (their
/// pid no longer runs), which no `Drop` got to delete. Only this host's: a state
/// directory shared by hosts (or pods, whose pids are their own) is swept by each.
fn process_dir(root: &Path) -> Result<PathBuf, String> {
    static DIRS: OnceLock<Mutex<BTreeMap<PathBuf, PathBuf>>> = OnceLock::new();
    let mut dirs = DIRS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = dirs.get(root) {
        return Ok(dir.clone());
    }
    let host = this_host();
    let dir = root.join(format!("{host}-{}-{:x}", std::process::id(), epoch_nanos()));
    create_state_dir(&dir)?;
    sweep_dead_processes(root, &host);
    dirs.insert(root.to_path_buf(), dir.clone());
    Ok(dir)
}

/// Creates `dir` (and its parents) for RocksDB, or says which flag to change.
fn create_state_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "cannot create the RocksDB directory {} (set --state-dir to a writable \
             directory): {e}",
            dir.display()
        )
    })
}

/// Nanoseconds since the Unix epoch, to tell runs apart in directory names.
fn epoch_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Deletes the directories under `root` of processes of `host` that no longer run.
fn sweep_dead_processes(root: &Path, host: &str) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(host)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => {
                tracing::info!(dir = %entry.path().display(), "deleted the RocksDB state a killed process left behind")
            }
            Err(e) => {
                tracing::warn!(dir = %entry.path().display(), error = %e, "could not delete the RocksDB state a killed process left behind")
            }
        }
    }
}

/// This host's name, made safe for a directory name.
fn this_host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let safe: String = name
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if safe.is_empty() { "host".into() } else { safe }
}

/// Deletes an instance's (or a checkpoint's) directory once it is closed.
#[derive(Debug)]
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.0.display(), error = %e, "could not delete a RocksDB directory");
        }
    }
}

/// Files of an instance that earlier checkpoints uploaded, by name in the instance's
/// directory: an incremental checkpoint uploads only the others. SST files never change
/// once written, so one uploaded is good for every later checkpoint that still has it.
pub(crate) type UploadedFiles = Arc<Mutex<BTreeMap<String, StateFile>>>;

/// The RocksDB instance of one keyed operator subtask.
pub(crate) struct RocksInstance {
    // Dropped before the guard deletes its directory (fields drop in order).
    db: DB,
    write: WriteOptions,
    /// Table ids, by state name.
    tables: RefCell<Vec<String>>,
    /// Unique among every instance of every process and run: the name of its directory,
    /// and of the directory its files are shared under in checkpoint storage.
    id: String,
    incremental: bool,
    uploaded: UploadedFiles,
    /// Bytes of each state's read cache ([`ReadCache`]).
    cache_budget: usize,
    _dir: DirGuard,
}

impl RocksInstance {
    /// Opens a fresh instance for `name` (operator uid and subtask) under `config.dir`.
    pub(crate) fn open(config: &RocksDbConfig, name: &str) -> Result<Rc<Self>, String> {
        Self::open_with(config, name, Vec::new(), |_| Ok(()))
    }

    /// Opens an instance for `name` whose database directory `fill` first fills with the
    /// files of a checkpoint, whose state names are `tables` in the order of their ids.
    pub(crate) fn open_with(
        config: &RocksDbConfig,
        name: &str,
        tables: Vec<String>,
        fill: impl FnOnce(&Path) -> Result<(), String>,
    ) -> Result<Rc<Self>, String> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let safe: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(64)
            .collect();
        let id = format!("{safe}-{:x}-{}-{unique}", epoch_nanos(), std::process::id());
        let dir = process_dir(&config.dir)?.join(&id);
        let _ = std::fs::remove_dir_all(&dir);
        let db_dir = dir.join("db");
        create_state_dir(&db_dir)?;
        let guard = DirGuard(dir.clone());
        fill(&db_dir)?;
        let options = db_options(config.memory_budget);
        let db = DB::open(&options, &db_dir)
            .map_err(|e| format!("cannot open RocksDB in {}: {e}", dir.display()))?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        Ok(Rc::new(RocksInstance {
            db,
            write,
            tables: RefCell::new(tables),
            id,
            incremental: config.incremental,
            uploaded: UploadedFiles::default(),
            cache_budget: config.memory_budget / READ_CACHE_SHARE,
            _dir: guard,
        }))
    }

    /// The id of the table of state `name`.
    fn table_id(&self, name: &str) -> u16 {
        let mut tables = self.tables.borrow_mut();
        match tables.iter().position(|t| t == name) {
            Some(i) => i as u16,
            None => {
                tables.push(name.to_string());
                (tables.len() - 1) as u16
            }
        }
    }

    fn failed(&self, what: &str, e: rocksdb::Error) -> ! {
        panic!("RocksDB failed to {what}: {e}")
    }

    /// The directory of the instance.
    pub(crate) fn dir(&self) -> &Path {
        &self._dir.0
    }

    /// Takes in restored entries as they are: key group `group`'s entries of each named
    /// state (the tables need not exist yet; their types are not needed). Only before
    /// the job's functions use the states: this goes around their read caches.
    pub(crate) fn restore(
        &self,
        group: usize,
        tables: &[(String, Vec<RawEntry>)],
    ) -> Result<(), String> {
        let mut batch = rocksdb::WriteBatch::default();
        for (name, entries) in tables {
            let table = self.table_id(name);
            for raw in entries {
                batch.put(
                    entry_key(table, group, key_hash(&raw.key), &raw.key, &raw.ns),
                    pack(raw.expiry, &raw.value),
                );
                // Written in batches, so a large key group is not held twice in memory.
                if batch.len() >= 4096 {
                    self.db
                        .write_opt(std::mem::take(&mut batch), &self.write)
                        .map_err(|e| format!("RocksDB failed to write restored state: {e}"))?;
                }
            }
        }
        self.db
            .write_opt(batch, &self.write)
            .map_err(|e| format!("RocksDB failed to write restored state: {e}"))
    }

    /// Every state's entries of key groups `range`, read now (for small state and tests;
    /// checkpoints use [`RocksInstance::checkpoint`]).
    pub(crate) fn snapshot(
        &self,
        range: KeyGroupRange,
        now: i64,
    ) -> Result<Vec<KeyGroupSnapshot>, String> {
        let tables = self.tables.borrow().clone();
        range
            .iter()
            .map(|g| read_group(&self.db, &tables, g, now))
            .collect()
    }

    /// A consistent copy of the instance as it is now (hard links after a memtable
    /// flush), for the uploader to read key group by key group.
    pub(crate) fn checkpoint(
        &self,
        id: u64,
        range: KeyGroupRange,
        now: i64,
    ) -> Result<RocksCheckpoint, String> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Beside the instance, not in it: the instance may close (its task ended) while
        // the uploader still reads this.
        let dir = PathBuf::from(format!("{}.chk-{id}-{unique}", self.dir().display()));
        let _ = std::fs::remove_dir_all(&dir);
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(&dir))
            .map_err(|e| {
                format!(
                    "RocksDB could not take a checkpoint in {}: {e}",
                    dir.display()
                )
            })?;
        Ok(RocksCheckpoint {
            dir: DirGuard(dir),
            tables: self.tables.borrow().clone(),
            range,
            now,
            instance: self.id.clone(),
            incremental: self.incremental,
            uploaded: self.uploaded.clone(),
        })
    }
}

/// The options of every instance: the process's shared memory budget, LZ4 (cheap to
/// compress), and index and filter blocks in the block cache so they count against the
/// budget too.
fn db_options(memory_budget: usize) -> Options {
    let (cache, wbm) = shared_memory(memory_budget);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_block_size(16 << 10);
    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_prefix_extractor(rocksdb::SliceTransform::create_fixed_prefix(HASHED_PREFIX));
    options.set_memtable_factory(rocksdb::MemtableFactory::HashSkipList {
        bucket_count: 100_000,
        height: 4,
        branching_factor: 4,
    });
    options.set_allow_concurrent_memtable_write(false);
    // Keyed state is read-modify-write: updating a value in the memtable in place (when
    // it is not longer than before) keeps one version per key instead of one per record,
    // so reads stay short and memtables rarely fill (keyed-sum p=1: 500k → 615k events/s).
    // It gives up point-in-time iterators over the live instance, which nothing uses:
    // iterations collect before user code runs, and checkpoints read a flushed copy.
    options.set_inplace_update_support(true);
    options.set_block_based_table_factory(&table);
    options.set_write_buffer_manager(&wbm);
    options.set_write_buffer_size((memory_budget / 8).clamp(1 << 20, 64 << 20));
    options.set_max_write_buffer_number(2);
    options.set_max_background_jobs(2);
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    options.set_max_open_files(256);
    options
}

/// A RocksDB checkpoint of one subtask's state, taken at a barrier: the uploader reads
/// it into the canonical format, and it is deleted once dropped.
#[derive(Debug)]
pub(crate) struct RocksCheckpoint {
    dir: DirGuard,
    tables: Vec<String>,
    range: KeyGroupRange,
    /// Processing time at the barrier: entries expired by then are left out.
    now: i64,
    /// The instance's id.
    pub instance: String,
    /// Upload only what earlier checkpoints did not.
    pub incremental: bool,
    /// What earlier checkpoints of the instance uploaded.
    pub uploaded: UploadedFiles,
}

impl PartialEq for RocksCheckpoint {
    fn eq(&self, other: &Self) -> bool {
        self.dir.0 == other.dir.0
    }
}

impl Eq for RocksCheckpoint {}

impl RocksCheckpoint {
    /// A local file beside the checkpoint, for its keyed-state file before upload.
    pub(crate) fn staging_file(&self) -> PathBuf {
        PathBuf::from(format!("{}.keyed", self.dir.0.display()))
    }

    /// Calls `f` with each key group's entries in turn (empty ones included), so only
    /// one key group is in memory at a time.
    pub(crate) fn for_each_group(
        &self,
        f: impl FnMut(KeyGroupSnapshot) -> Result<(), String>,
    ) -> Result<(), String> {
        for_each_group_in(&self.dir.0, &self.tables, self.range, self.now, f)
    }

    /// The state names, in the order of their table ids.
    pub(crate) fn tables(&self) -> &[String] {
        &self.tables
    }

    /// Every file of the checkpoint: its name and where it is on local disk.
    pub(crate) fn files(&self) -> Result<Vec<(String, PathBuf)>, String> {
        let listing = std::fs::read_dir(&self.dir.0).map_err(|e| {
            format!(
                "cannot list the RocksDB checkpoint in {}: {e}",
                self.dir.0.display()
            )
        })?;
        let mut files = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|e| format!("cannot list a RocksDB checkpoint: {e}"))?;
            files.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
        files.sort();
        Ok(files)
    }
}

/// Calls `f` with each key group of `range` of the RocksDB database in `dir` (a
/// checkpoint, opened read-only; its state names are `tables`), leaving out entries
/// expired at `now`.
pub(crate) fn for_each_group_in(
    dir: &Path,
    tables: &[String],
    range: KeyGroupRange,
    now: i64,
    mut f: impl FnMut(KeyGroupSnapshot) -> Result<(), String>,
) -> Result<(), String> {
    let mut options = Options::default();
    options.set_max_open_files(64);
    let db = DB::open_for_read_only(&options, dir, false).map_err(|e| {
        format!(
            "cannot open the RocksDB checkpoint in {}: {e}",
            dir.display()
        )
    })?;
    for g in range.iter() {
        f(read_group(&db, tables, g, now)?)?;
    }
    Ok(())
}

/// Key group `group` of every table of `db`, leaving out entries expired at `now`.
fn read_group(
    db: &DB,
    tables: &[String],
    group: usize,
    now: i64,
) -> Result<KeyGroupSnapshot, String> {
    let mut snapshot = KeyGroupSnapshot {
        group: group as u32,
        ..KeyGroupSnapshot::default()
    };
    for (id, name) in tables.iter().enumerate() {
        let prefix = group_prefix(id as u16, group);
        let mut read = ReadOptions::default();
        read.set_iterate_range(prefix.to_vec()..prefix_end(&prefix));
        // Across memtable buckets, in key order.
        read.set_total_order_seek(true);
        // A snapshot reads everything once: keep the cache for the job's own reads.
        read.fill_cache(false);
        let mut entries = Vec::new();
        for item in db.iterator_opt(IteratorMode::Start, read) {
            let (k, v) = item.map_err(|e| format!("RocksDB failed to read state: {e}"))?;
            let (expiry, value) = unpack(&v)?;
            if expiry.is_some_and(|at| at <= now) {
                continue;
            }
            let (key, ns) = split_entry_key(&k).ok_or("a RocksDB key of another layout")?;
            entries.push(RawEntry {
                key: key.to_vec(),
                ns: ns.to_vec(),
                value: value.to_vec(),
                expiry,
            });
        }
        if !entries.is_empty() {
            snapshot.tables.push((name.clone(), entries));
        }
    }
    Ok(snapshot)
}

/// Each state's read cache may hold this share of the memory budget (4 MiB of the
/// default 256).
const READ_CACHE_SHARE: usize = 64;

/// Table, key group and key hash: the memtable's bucket of an entry.
const HASHED_PREFIX: usize = 8;

/// The hash of a key's canonical bytes in its entry keys (not `Hash`: restored entries
/// come without their types).
fn key_hash(key: &[u8]) -> u32 {
    crc32fast::hash(key)
}

/// `[table][group]`: where the entries of a table's key group begin.
fn group_prefix(table: u16, group: usize) -> [u8; 4] {
    let mut p = [0; 4];
    p[..2].copy_from_slice(&table.to_be_bytes());
    p[2..].copy_from_slice(&(group as u16).to_be_bytes());
    p
}

/// The entry key of `key` (canonical bytes, hashing to `hash`) and `ns` in `table`, key
/// group `group`.
fn entry_key(table: u16, group: usize, hash: u32, key: &[u8], ns: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(12 + key.len() + ns.len());
    k.extend_from_slice(&group_prefix(table, group));
    k.extend_from_slice(&hash.to_be_bytes());
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k.extend_from_slice(ns);
    k
}

/// The key and namespace bytes of an entry key.
fn split_entry_key(k: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(k.get(8..12)?.try_into().ok()?) as usize;
    let key = k.get(12..12 + len)?;
    Some((key, &k[12 + len..]))
}

/// The smallest key after every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

/// A stored value: the tag, the expiry if any, the canonical bytes.
fn pack(expiry: Option<i64>, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + value.len());
    match expiry {
        None => out.push(0),
        Some(at) => {
            out.push(1);
            out.extend_from_slice(&at.to_le_bytes());
        }
    }
    out.extend_from_slice(value);
    out
}

/// The expiry and canonical bytes of a stored value.
fn unpack(stored: &[u8]) -> Result<(Option<i64>, &[u8]), String> {
    match stored.split_first() {
        Some((0, value)) => Ok((None, value)),
        Some((1, rest)) if rest.len() >= 8 => {
            let mut at = [0; 8];
            at.copy_from_slice(&rest[..8]);
            Ok((Some(i64::from_le_bytes(at)), &rest[8..]))
        }
        _ => Err("a RocksDB value of another layout".into()),
    }
}

/// One named state of one operator subtask, in its RocksDB instance.
pub(crate) struct RocksTable<K, N, V, X> {
    key: Rc<KeyContext<K>>,
    db: Rc<RocksInstance>,
    table: u16,
    ttl: Option<StateTtlConfig>,
    clock: Rc<Clock>,
    /// The current key, its encoding and the encoding's hash, so a run of records of one
    /// key encodes it once.
    encoded: RefCell<Option<(K, Vec<u8>, u32)>>,
    cache: RefCell<ReadCache<V>>,
    _types: PhantomData<(N, V, X)>,
}

/// Decoded values of entries recently read or written, by entry key: keyed state is
/// read-modify-write, and a value read back from here needs neither a RocksDB lookup nor
/// decoding. Writes go through to RocksDB, which stays the state of record (checkpoints,
/// iteration, restore), so nothing is ever flushed from here. It holds about `budget`
/// bytes (by encoded size) and is emptied when it would hold more: keys that are hot
/// come back at once, and no bookkeeping is paid per read.
struct ReadCache<V> {
    /// Expiry, value, and the bytes the entry is counted as.
    entries: std::collections::HashMap<Vec<u8>, (Option<i64>, V, usize)>,
    bytes: usize,
    budget: usize,
}

impl<V: Clone> ReadCache<V> {
    /// Per-entry overhead counted on top of its encoded key and value.
    const ENTRY_OVERHEAD: usize = 64;

    fn new(budget: usize) -> Self {
        ReadCache {
            entries: std::collections::HashMap::new(),
            bytes: 0,
            budget,
        }
    }

    fn get(&self, k: &[u8]) -> Option<(Option<i64>, V)> {
        self.entries.get(k).map(|(e, v, _)| (*e, v.clone()))
    }

    fn insert(&mut self, k: &[u8], expiry: Option<i64>, value: V, encoded_len: usize) {
        if self.budget == 0 {
            return;
        }
        let size = k.len() + encoded_len + Self::ENTRY_OVERHEAD;
        if let Some(slot) = self.entries.get_mut(k) {
            self.bytes = self.bytes - slot.2 + size;
            *slot = (expiry, value, size);
            return;
        }
        if self.bytes + size > self.budget {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        self.entries.insert(k.to_vec(), (expiry, value, size));
    }

    fn remove(&mut self, k: &[u8]) {
        if let Some((_, _, size)) = self.entries.remove(k) {
            self.bytes -= size;
        }
    }
}

impl<K: Key, N: Data, V: Data, X: Expiry> RocksTable<K, N, V, X> {
    pub(crate) fn new(
        key: Rc<KeyContext<K>>,
        db: Rc<RocksInstance>,
        name: &str,
        ttl: Option<StateTtlConfig>,
        clock: Rc<Clock>,
    ) -> Self {
        let table = db.table_id(name);
        let cache = RefCell::new(ReadCache::new(db.cache_budget));
        RocksTable {
            key,
            db,
            table,
            ttl,
            clock,
            encoded: RefCell::new(None),
            cache,
            _types: PhantomData,
        }
    }

    /// The entry key of the current key and `ns`.
    fn current(&self, ns: &N) -> Vec<u8> {
        let key_ref = self.key.key();
        let Some(key) = key_ref.as_ref() else {
            panic!(
                "keyed state was used where no key is set (outside processing of a keyed record or timer)"
            );
        };
        let mut encoded = self.encoded.borrow_mut();
        if encoded.as_ref().is_none_or(|(k, _, _)| k != key) {
            let bytes = encode(key).unwrap_or_else(|e| panic!("{e}"));
            let hash = key_hash(&bytes);
            *encoded = Some((key.clone(), bytes, hash));
        }
        let (key_bytes, hash) = encoded
            .as_ref()
            .map_or((&[][..], 0), |(_, b, h)| (b.as_slice(), *h));
        let ns = encode(ns).unwrap_or_else(|e| panic!("{e}"));
        // The key context counts key groups from the subtask's first.
        let group = self.key.range().start + self.key.group();
        entry_key(self.table, group, hash, key_bytes, &ns)
    }

    fn now_if_ttl(&self) -> i64 {
        if self.ttl.is_some() {
            self.clock.now()
        } else {
            i64::MIN
        }
    }

    fn encode_value(&self, expiry: Option<i64>, value: &V) -> Vec<u8> {
        let bytes = encode(value).unwrap_or_else(|e| panic!("{e}"));
        pack(expiry, &bytes)
    }

    /// The expiry of an entry written now.
    fn expiry_on_write(&self) -> Option<i64> {
        self.ttl
            .map(|t| self.clock.now().saturating_add(t.ttl_millis()))
            .filter(|_| X::TRACKED)
    }

    /// Writes `value` (expiring at `expiry`) at `k`, through the read cache.
    fn write(&self, k: &[u8], expiry: Option<i64>, value: V) {
        let packed = self.encode_value(expiry, &value);
        let len = packed.len();
        if let Err(e) = self.db.db.put_opt(k, packed, &self.db.write) {
            self.db.failed("write state", e);
        }
        self.cache.borrow_mut().insert(k, expiry, value, len);
    }

    fn delete(&self, k: &[u8]) {
        self.cache.borrow_mut().remove(k);
        if let Err(e) = self.db.db.delete_opt(k, &self.db.write) {
            self.db.failed("delete state", e);
        }
    }

    /// The entry at `k` and its expiry, from the read cache or RocksDB.
    fn lookup(&self, k: &[u8]) -> Option<(Option<i64>, V)> {
        if let Some(hit) = self.cache.borrow().get(k) {
            return Some(hit);
        }
        let stored = match self.db.db.get_pinned(k) {
            Ok(s) => s?,
            Err(e) => self.db.failed("read state", e),
        };
        let (expiry, bytes) = unpack(&stored).unwrap_or_else(|e| panic!("{e}"));
        let value: V = decode(bytes).unwrap_or_else(|e| panic!("{e}"));
        self.cache
            .borrow_mut()
            .insert(k, expiry, value.clone(), stored.len());
        Some((expiry, value))
    }

    /// The entry at `k` with TTL rules applied (as the heap table does): `(value,
    /// expired)`; an expired entry is deleted by the read that finds it. Entries restored
    /// without an expiry into state with a time-to-live keep until their next write.
    fn read(&self, k: &[u8]) -> Option<(V, bool)> {
        let (expiry, value) = self.lookup(k)?;
        let Some(ttl) = &self.ttl else {
            return Some((value, false));
        };
        let now = self.clock.now();
        if expiry.is_some_and(|at| at <= now) {
            self.delete(k);
            return Some((value, true));
        }
        if ttl.update_type == TtlUpdateType::OnReadAndWrite {
            self.write(k, Some(now.saturating_add(ttl.ttl_millis())), value.clone());
        }
        Some((value, false))
    }

    /// What a read shows of an entry that may have expired.
    fn visible(&self, found: Option<(V, bool)>) -> Option<V> {
        match found {
            Some((v, false)) => Some(v),
            Some((v, true))
                if self.ttl.is_some_and(|t| {
                    t.visibility == TtlVisibility::ReturnExpiredIfNotCleanedUp
                }) =>
            {
                Some(v)
            }
            _ => None,
        }
    }
}

impl<K: Key, N: Data, V: Data, X: Expiry> NsTable<N, V> for RocksTable<K, N, V, X> {
    fn get(&self, ns: &N) -> Option<V> {
        let k = self.current(ns);
        let found = self.read(&k);
        self.visible(found)
    }

    fn with_ref(&self, ns: &N, f: &mut dyn FnMut(Option<&V>)) {
        let v = self.get(ns);
        f(v.as_ref());
    }

    fn put(&self, ns: &N, value: V) {
        let k = self.current(ns);
        self.write(&k, self.expiry_on_write(), value);
    }

    fn modify(&self, ns: &N, f: &mut dyn FnMut(Option<&mut V>) -> Option<V>) {
        let k = self.current(ns);
        let found = self.read(&k);
        let mut current = self.visible(found);
        let replacement = f(current.as_mut());
        match (replacement, current) {
            (Some(new), _) | (None, Some(new)) => {
                self.write(&k, self.expiry_on_write(), new);
            }
            (None, None) => {}
        }
    }

    fn remove(&self, ns: &N) -> Option<V> {
        let k = self.current(ns);
        let found = self.read(&k);
        if found.is_some() {
            self.delete(&k);
        }
        self.visible(found)
    }

    fn contains(&self, ns: &N) -> bool {
        self.get(ns).is_some()
    }
}

impl<K: Key, N: Data, V: Data, X: Expiry> TableKeys<K> for RocksTable<K, N, V, X> {
    fn keys(&self) -> Vec<K> {
        let now = self.now_if_ttl();
        let prefix = self.table.to_be_bytes();
        let mut read = ReadOptions::default();
        read.set_iterate_range(prefix.to_vec()..prefix_end(&prefix));
        read.set_total_order_seek(true);
        let mut keys: Vec<K> = Vec::new();
        let mut last: Vec<u8> = Vec::new();
        for item in self.db.db.iterator_opt(IteratorMode::Start, read) {
            let Ok((k, v)) = item else {
                continue;
            };
            let Ok((expiry, _)) = unpack(&v) else {
                continue;
            };
            let Some((key, _)) = split_entry_key(&k) else {
                continue;
            };
            // Entries of one key are next to each other (all its namespaces).
            if expiry.is_some_and(|at| at <= now) || key == last.as_slice() {
                continue;
            }
            last = key.to_vec();
            if let Ok(key) = decode::<K>(key) {
                keys.push(key);
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProcessingTimeMode;
    use crate::keygroup::KeyGroupRange;
    use crate::state::backend::{KeyedBackend, StateStore};
    use std::time::Duration;

    fn backend() -> (KeyedBackend<String>, Rc<Clock>, Rc<RocksInstance>) {
        let range = KeyGroupRange::for_subtask(128, 1, 0);
        let key = Rc::new(KeyContext::new(range, 128));
        let clock = Rc::new(Clock::new(ProcessingTimeMode::Simulated));
        let db = RocksInstance::open(
            &RocksDbConfig {
                memory_budget: 16 << 20,
                ..RocksDbConfig::default()
            },
            "rocks-test",
        )
        .expect("opens");
        let backend = KeyedBackend::with_store(key, clock.clone(), StateStore::RocksDb(db.clone()));
        (backend, clock, db)
    }

    #[test]
    fn values_are_kept_per_key_and_namespace() {
        let (backend, _, _) = backend();
        let sums = backend.table::<u32, u64>("sums", None);
        for (key, ns, v) in [("a", 1, 10), ("a", 2, 20), ("b", 1, 30)] {
            backend.set_current_key(key.into()).expect("owned");
            sums.put(&ns, v);
        }
        backend.set_current_key("a".into()).expect("owned");
        assert_eq!(sums.get(&1), Some(10));
        assert_eq!(sums.get(&2), Some(20));
        sums.modify(&1, &mut |v| {
            if let Some(v) = v {
                *v += 5;
            }
            None
        });
        assert_eq!(sums.get(&1), Some(15));
        assert_eq!(sums.remove(&2), Some(20));
        assert!(!sums.contains(&2));
        sums.modify(&3, &mut |v| v.is_none().then_some(7));
        assert_eq!(sums.get(&3), Some(7));
        backend.set_current_key("b".into()).expect("owned");
        assert_eq!(sums.get(&1), Some(30));
        assert_eq!(sums.get(&3), None);
        let mut keys = backend.keys_of("sums");
        keys.sort();
        assert_eq!(keys, ["a", "b"]);
    }

    #[test]
    fn entries_expire_after_their_time_to_live() {
        let (backend, clock, _) = backend();
        let ttl = StateTtlConfig::new(Duration::from_millis(100));
        let last = backend.table::<(), String>("last", Some(ttl));
        backend.set_current_key("k".into()).expect("owned");
        clock.advance_to(1000);
        last.put(&(), "seen".into());
        clock.advance_to(1099);
        assert_eq!(last.get(&()), Some("seen".into()));
        clock.advance_to(1100);
        assert_eq!(last.get(&()), None);
        assert!(backend.keys_of("last").is_empty());
    }

    #[test]
    fn values_are_right_when_the_read_cache_overflows_again_and_again() {
        // A 64 KiB budget: each state's cache holds 1 KiB, a dozen entries.
        let range = KeyGroupRange::for_subtask(128, 1, 0);
        let key = Rc::new(KeyContext::new(range, 128));
        let clock = Rc::new(Clock::new(ProcessingTimeMode::Simulated));
        let config = RocksDbConfig {
            memory_budget: 64 << 10,
            ..RocksDbConfig::default()
        };
        let db = RocksInstance::open(&config, "rocks-cache-test").expect("opens");
        let backend = KeyedBackend::with_store(key, clock, StateStore::RocksDb(db));
        let counts = backend.table::<(), u64>("counts", None);
        for round in 1..=3u64 {
            for k in 0..500u64 {
                backend.set_current_key(k.to_string()).expect("owned");
                counts.modify(&(), &mut |v| match v {
                    Some(v) => {
                        *v += k;
                        None
                    }
                    None => Some(k),
                });
                if round == 3 && k % 2 == 0 {
                    assert_eq!(counts.remove(&()), Some(3 * k));
                }
            }
        }
        for k in 0..500u64 {
            backend.set_current_key(k.to_string()).expect("owned");
            let expected = (k % 2 == 1).then_some(3 * k);
            assert_eq!(counts.get(&()), expected, "key {k}");
        }
    }

    #[test]
    fn what_killed_processes_of_this_host_left_behind_is_deleted() {
        let root = tempfile::tempdir().expect("a directory");
        let host = this_host();
        let left = |name: &str| {
            let dir = root.path().join(name);
            std::fs::create_dir_all(dir.join("op-0-1/db")).expect("creates");
            std::fs::write(dir.join("op-0-1/db/000012.sst"), b"state").expect("writes");
            dir
        };
        // A pid no process has; pid 1 always runs; another host's pids are not ours.
        let dead = left(&format!("{host}-4000000000-17"));
        let running = left(&format!("{host}-1-17"));
        let other_host = left("elsewhere-4000000000-17");
        let config = RocksDbConfig {
            dir: root.path().to_path_buf(),
            memory_budget: 16 << 20,
            ..RocksDbConfig::default()
        };
        let db = RocksInstance::open(&config, "sweep-test").expect("opens");
        assert!(!dead.exists(), "{}", dead.display());
        assert!(running.exists());
        assert!(other_host.exists());
        assert!(db.dir().starts_with(root.path()));
    }

    #[test]
    fn the_instance_directory_goes_with_the_instance() {
        let (backend, _, db) = backend();
        let dir = db.dir().to_path_buf();
        assert!(dir.exists());
        drop(db);
        drop(backend);
        assert!(!dir.exists(), "{}", dir.display());
    }
}
