//! The compiled-code cache on disk.
//!
//! - An entry holds the machine code of one component for one engine:
//!   `{sha256}-{engine compatibility hash}.cwasm`. Entries are only ever
//!   created whole (written to a temporary file, then renamed), never changed
//!   in place, so the sandbox maps them instead of reading them: a 40 MB
//!   Python entry maps in about 3 ms and reads in about 35 ms.
//! - So that a load needs neither read nor hash the component (13 ms for
//!   Python's 18 MB), `files/` remembers the sha256 of each plugin file under
//!   its fingerprint: device, inode, size, modification and change times. Any
//!   write to the file changes its change time, which no user can set back, so
//!   a changed file is always hashed again. A fingerprint taken within
//!   [`SETTLE`] of the file's last change is not remembered: timestamps are
//!   coarse, and two writes in the same tick would look alike.
//!
//! - `metadata/` remembers each component's `metadata()` answer, per contract
//!   and limits it was given under, so that loading a known plugin starts no
//!   instance (a fresh Python instance takes about 1.5 ms to answer).
//!
//! The cache directory must be as trusted as the host binary: whoever can
//! write to it can choose the machine code that runs. So it is created
//! private (0700), and one that is not the user's own, or that others may
//! write to (or whose parent others may rename it in), is refused.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

/// How long a file must have been left alone before its hash is remembered.
const SETTLE: Duration = Duration::from_secs(2);

/// The compiled-code cache in one directory.
#[derive(Debug, Clone)]
pub(crate) struct CodeCache {
    dir: PathBuf,
}

impl CodeCache {
    /// The cache in `dir`, created private if it is missing, and refused if
    /// anyone but this user could change what is in it.
    pub(crate) fn open(dir: &Path) -> anyhow::Result<CodeCache> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the compiled-code cache {}", dir.display()))?;
        check_private(dir)?;
        Ok(CodeCache {
            dir: dir.to_owned(),
        })
    }

    /// Where the entry for a component and an engine lives.
    pub(crate) fn entry(&self, sha256: &str, compatibility: u64) -> PathBuf {
        self.dir
            .join(format!("{sha256}-{compatibility:016x}.cwasm"))
    }

    /// Wait for, then hold, the lock of an entry while it is compiled, so
    /// that processes (and threads) loading the same new component compile
    /// it once: the others wait here, then find the entry. `None` when the
    /// lock cannot be had; the compile then goes ahead unlocked.
    pub(crate) fn lock(&self, entry: &Path) -> Option<EntryLock> {
        let path = entry.with_extension("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .ok()?;
        match file.lock() {
            Ok(()) => Some(EntryLock { path, _file: file }),
            Err(err) => {
                tracing::debug!("cannot lock {}: {err}", path.display());
                None
            }
        }
    }

    /// Store an entry: written aside, then renamed into place, so a reader
    /// (and a mapping) only ever sees a whole entry.
    pub(crate) fn store(&self, entry: &Path, machine_code: &[u8]) -> anyhow::Result<()> {
        write_atomically(entry, machine_code)
    }

    /// A remembered answer of the component `sha256` to the question `key`.
    pub(crate) fn answer(&self, sha256: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.answer_path(sha256, key)).ok()
    }

    /// Remember an answer. Best effort: a failure only costs asking again.
    pub(crate) fn remember_answer(&self, sha256: &str, key: &str, answer: &[u8]) {
        let path = self.answer_path(sha256, key);
        if let Err(err) = write_atomically(&path, answer) {
            tracing::debug!("cannot remember {}: {err:#}", path.display());
        }
    }

    fn answer_path(&self, sha256: &str, key: &str) -> PathBuf {
        self.dir
            .join("metadata")
            .join(format!("{sha256}-{key}.json"))
    }

    /// The sha256 remembered for `path`, if the file is unchanged since.
    /// `metadata` must be taken before the file is read.
    pub(crate) fn known_sha256(&self, path: &Path, metadata: &std::fs::Metadata) -> Option<String> {
        let fingerprint = fingerprint(metadata)?;
        let record = std::fs::read_to_string(self.record_path(path)?).ok()?;
        let (recorded, sha256) = record.trim_end().rsplit_once(' ')?;
        (recorded == fingerprint && sha256.len() == 64).then(|| sha256.to_owned())
    }

    /// Remember the sha256 of `path` as it was when `metadata` was taken
    /// (before it was read). Best effort: a failure only costs a hash later.
    pub(crate) fn remember_sha256(&self, path: &Path, metadata: &std::fs::Metadata, sha256: &str) {
        self.remember_sha256_at(path, metadata, sha256, SystemTime::now());
    }

    fn remember_sha256_at(
        &self,
        path: &Path,
        metadata: &std::fs::Metadata,
        sha256: &str,
        now: SystemTime,
    ) {
        let (Some(fingerprint), Some(record)) = (fingerprint(metadata), self.record_path(path))
        else {
            return;
        };
        let settled = last_change(metadata)
            .and_then(|changed| now.duration_since(changed).ok())
            .is_some_and(|age| age >= SETTLE);
        if !settled {
            return;
        }
        if let Err(err) = write_atomically(&record, format!("{fingerprint} {sha256}\n").as_bytes())
        {
            tracing::debug!("cannot remember the hash of {}: {err:#}", path.display());
        }
    }

    /// One small record per plugin path, named by the hash of the path.
    fn record_path(&self, path: &Path) -> Option<PathBuf> {
        let path = std::fs::canonicalize(path).ok()?;
        let name = super::hex(&Sha256::digest(path.as_os_str().as_encoded_bytes()));
        Some(self.dir.join("files").join(name))
    }
}

/// The lock of one entry, held while it is compiled. Dropped once the entry
/// is stored: the lock file is removed first, then the lock let go, so a
/// process that waited finds the entry, and one that comes later finds no
/// lock to wait on.
pub(crate) struct EntryLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl Drop for EntryLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What a cache directory holds, or what a prune removed from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheUsage {
    /// Compiled components (one per component and engine).
    pub entries: u64,
    /// Their size on disk, in bytes.
    pub entry_bytes: u64,
    /// Remembered `metadata()` answers.
    pub answers: u64,
    /// Remembered hashes of plugin files.
    pub records: u64,
}

/// How long an entry may go unused before a prune may remove it, and how
/// often its last use is written down.
const TOUCH_EVERY: Duration = Duration::from_secs(24 * 3600);

impl CodeCache {
    /// Note that an entry was used, at most once a day: prunes go by it.
    pub(crate) fn touch(entry: &Path) {
        let stale = std::fs::metadata(entry)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age >= TOUCH_EVERY);
        if stale {
            let touched = std::fs::File::options()
                .append(true)
                .open(entry)
                .and_then(|f| f.set_modified(SystemTime::now()));
            if let Err(err) = touched {
                tracing::debug!("cannot note the use of {}: {err}", entry.display());
            }
        }
    }

    /// What the cache holds now.
    pub(crate) fn usage(&self) -> CacheUsage {
        self.sweep(None)
    }

    /// Remove compiled entries unused for `max_age` (after a wasmtime
    /// upgrade the old engine's entries are never used again, so they go
    /// too), remembered answers of components no entry is left for, and
    /// file records older than `max_age`. Answers what was removed.
    pub(crate) fn prune(&self, max_age: Duration) -> CacheUsage {
        self.sweep(Some(max_age))
    }

    fn sweep(&self, prune: Option<Duration>) -> CacheUsage {
        let old = |path: &Path| {
            prune.is_some_and(|max_age| {
                std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|at| at.elapsed().ok())
                    .is_some_and(|age| age > max_age)
            })
        };
        let remove = |path: &Path| match std::fs::remove_file(path) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!("cannot remove {}: {err}", path.display());
                false
            }
        };
        let mut counted = CacheUsage::default();
        let mut live = std::collections::BTreeSet::new();
        for path in files_in(&self.dir) {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let Some(stem) = name.strip_suffix(".cwasm") else {
                continue;
            };
            let sha256 = stem.split('-').next().unwrap_or_default().to_owned();
            let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
            let counts = match prune {
                None => true,
                Some(_) if old(&path) && remove(&path) => true,
                Some(_) => false,
            };
            if counts {
                counted.entries += 1;
                counted.entry_bytes += bytes;
            } else {
                live.insert(sha256);
            }
        }
        for path in files_in(&self.dir.join("metadata")) {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let sha256 = name.split('-').next().unwrap_or_default();
            if prune.is_none() || (!live.contains(sha256) && remove(&path)) {
                counted.answers += 1;
            }
        }
        for path in files_in(&self.dir.join("files")) {
            if prune.is_none() || (old(&path) && remove(&path)) {
                counted.records += 1;
            }
        }
        counted
    }
}

/// The regular files of a directory (none if it cannot be read).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect()
}

/// Everything a write to the file changes.
#[cfg(unix)]
fn fingerprint(metadata: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    Some(format!(
        "v1 {} {} {} {}.{:09} {}.{:09}",
        metadata.dev(),
        metadata.ino(),
        metadata.size(),
        metadata.mtime(),
        metadata.mtime_nsec(),
        metadata.ctime(),
        metadata.ctime_nsec()
    ))
}

/// Without change times there is no safe fingerprint: always hash.
#[cfg(not(unix))]
fn fingerprint(_metadata: &std::fs::Metadata) -> Option<String> {
    None
}

/// The later of the file's modification and change times.
#[cfg(unix)]
fn last_change(metadata: &std::fs::Metadata) -> Option<SystemTime> {
    use std::os::unix::fs::MetadataExt as _;
    let changed = SystemTime::UNIX_EPOCH.checked_add(Duration::new(
        u64::try_from(metadata.ctime()).ok()?,
        u32::try_from(metadata.ctime_nsec()).ok()?,
    ))?;
    Some(changed.max(metadata.modified().ok()?))
}

#[cfg(not(unix))]
fn last_change(_metadata: &std::fs::Metadata) -> Option<SystemTime> {
    None
}

/// Refuse a cache directory anyone but this user (or root) could change:
/// one owned by someone else, one group- or world-writable, or one whose
/// parent lets others rename it away and put theirs in its place.
fn check_private(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code, reason = "std has no geteuid")]
    let me = unsafe { libc::geteuid() };
    let refuse = |why: String| {
        anyhow::anyhow!(
            "the compiled-code cache {} {why}; its entries run as native code with the host's credentials, so it must be private to this user (chmod 700 it, or set plugins.cache_dir)",
            dir.display()
        )
    };
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("reading the compiled-code cache {}", dir.display()))?;
    if !meta.is_dir() {
        return Err(refuse("is not a directory".into()));
    }
    if meta.uid() != me {
        return Err(refuse(format!(
            "belongs to user {}, not to this user ({me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "may be written by others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    if let Some(parent) = std::fs::canonicalize(dir)?.parent() {
        let up = std::fs::metadata(parent)?;
        let others_may_rename = up.mode() & 0o022 != 0 && up.mode() & 0o1000 == 0;
        if others_may_rename || (up.uid() != me && up.uid() != 0) {
            return Err(refuse(format!(
                "is in {}, which others may change (owner {}, mode {:o})",
                parent.display(),
                up.uid(),
                up.mode() & 0o7777
            )));
        }
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = path.parent().context("cache path has no directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // Unique per writer: concurrent compiles of one plugin must not collide.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!(".{}-{n}.tmp", std::process::id()));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a";

    fn later() -> SystemTime {
        SystemTime::now() + 2 * SETTLE
    }

    /// A cache and one plugin file holding `content`, in a temporary directory.
    struct Fixture {
        dir: tempfile::TempDir,
        cache: CodeCache,
        file: PathBuf,
    }

    impl Fixture {
        fn new(content: &[u8]) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let cache = CodeCache::open(&dir.path().join("cache")).unwrap();
            let file = dir.path().join("plugin.wasm");
            std::fs::write(&file, content).unwrap();
            Fixture { dir, cache, file }
        }

        fn metadata(&self) -> std::fs::Metadata {
            std::fs::metadata(&self.file).unwrap()
        }

        /// Remember SHA for the file as it is, as if it had settled.
        fn remember(&self) -> std::fs::Metadata {
            let metadata = self.metadata();
            self.cache
                .remember_sha256_at(&self.file, &metadata, SHA, later());
            metadata
        }
    }

    #[test]
    fn a_settled_file_is_known_until_it_changes() {
        let f = Fixture::new(b"one");
        assert_eq!(f.cache.known_sha256(&f.file, &f.metadata()), None);
        let before = f.remember();
        assert_eq!(f.cache.known_sha256(&f.file, &before).as_deref(), Some(SHA));
        // Same size, same modification time: the change time still moves.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&f.file, b"two").unwrap();
        let modified = before.modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&f.file)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        let after = f.metadata();
        assert_eq!(after.len(), before.len());
        assert_eq!(after.modified().unwrap(), modified);
        assert_eq!(f.cache.known_sha256(&f.file, &after), None);
    }

    #[test]
    fn a_file_changed_just_now_is_not_remembered() {
        let f = Fixture::new(b"fresh");
        let metadata = f.metadata();
        f.cache.remember_sha256(&f.file, &metadata, SHA);
        assert_eq!(f.cache.known_sha256(&f.file, &metadata), None);
    }

    #[test]
    fn another_path_to_the_same_file_finds_the_record() {
        let f = Fixture::new(b"one");
        let metadata = f.remember();
        let roundabout = f.dir.path().join(".").join("plugin.wasm");
        assert_eq!(
            f.cache.known_sha256(&roundabout, &metadata).as_deref(),
            Some(SHA)
        );
        let other = f.dir.path().join("other.wasm");
        std::fs::write(&other, b"one").unwrap();
        let other_metadata = std::fs::metadata(&other).unwrap();
        assert_eq!(f.cache.known_sha256(&other, &other_metadata), None);
    }

    #[test]
    fn a_damaged_record_is_ignored() {
        let f = Fixture::new(b"one");
        let metadata = f.remember();
        let record = f.cache.record_path(&f.file).unwrap();
        let text = std::fs::read_to_string(&record).unwrap();
        std::fs::write(&record, &text[..text.len() - 10]).unwrap();
        assert_eq!(f.cache.known_sha256(&f.file, &metadata), None);
    }
}
