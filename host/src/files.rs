//! Reading files from directories the host does not fully trust (the plugin
//! directory): each is checked to be a regular file of bounded size on the
//! open descriptor itself, before a byte is read, so a FIFO, a device, a
//! directory or a huge sparse file costs nothing, even if it is swapped in
//! after a directory scan.

use std::fs::{File, Metadata};
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    /// It could not be opened or read.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// It is not a regular file.
    #[error("not a regular file ({0})")]
    NotRegular(&'static str),
    /// It is larger than the host reads.
    #[error("{size} bytes is larger than the {max} bytes the host reads")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The most the host reads.
        max: u64,
    },
}

/// What kind of entry `metadata` describes, in words.
pub(crate) fn kind(metadata: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    let file_type = metadata.file_type();
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Check that `metadata` is of a regular file of at most `max` bytes.
pub(crate) fn check(metadata: &Metadata, max: u64) -> Result<(), FileProblem> {
    if !metadata.is_file() {
        return Err(FileProblem::NotRegular(kind(metadata)));
    }
    if metadata.len() > max {
        return Err(FileProblem::TooLarge {
            size: metadata.len(),
            max,
        });
    }
    Ok(())
}

/// A regular file of at most `max` bytes, open, with its metadata as read
/// from the descriptor. Opening never blocks: a FIFO opens at once
/// (non-blocking) and is then refused for what it is.
pub(crate) fn open(path: &Path, max: u64) -> Result<(File, Metadata), FileProblem> {
    open_with(path, max, 0)
}

/// [`open`], but a symbolic link at `path` is refused, not followed: for
/// state the host reads back (a kill switch), where a link, even a
/// dangling one, is not what the host wrote.
pub(crate) fn open_no_follow(path: &Path, max: u64) -> Result<(File, Metadata), FileProblem> {
    match open_with(path, max, libc::O_NOFOLLOW) {
        Err(FileProblem::Io(err)) if err.raw_os_error() == Some(libc::ELOOP) => {
            Err(FileProblem::NotRegular("a symbolic link"))
        }
        other => other,
    }
}

fn open_with(path: &Path, max: u64, flags: i32) -> Result<(File, Metadata), FileProblem> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | flags)
        .open(path)?;
    let metadata = file.metadata()?;
    check(&metadata, max)?;
    Ok((file, metadata))
}

/// Read a file that [`open`] accepted, never more than `max` bytes (a file
/// that grew since it was checked is refused, not read on).
pub(crate) fn read(file: File, max: u64) -> Result<Vec<u8>, FileProblem> {
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    let size = bytes.len() as u64;
    if size > max {
        return Err(FileProblem::TooLarge { size, max });
    }
    Ok(bytes)
}

/// [`open`] then [`read`].
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, FileProblem> {
    let (file, _) = open(path, max)?;
    read(file, max)
}

/// Create a directory (and its parents) that only the user may enter, as
/// the state directory must be: it holds the kill switch and the history.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    create_dir_with_mode(dir, 0o700)
}

/// Create a directory (and its parents) with `mode` (less the umask).
pub(crate) fn create_dir_with_mode(dir: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
}

/// Write a whole file so that a reader (a browser, node_exporter's
/// textfile collector) sees the old one or the new one, never half: a
/// temporary file beside it, renamed over it.
/// How [`write_atomic`]'s files begin until they are renamed into place:
/// then the writer's pid and `-`.
pub(crate) const PARTIAL_PREFIX: &str = ".partial-";

/// The pid of the process that began writing `name`, when it is one of
/// [`write_atomic`]'s half-written files.
pub(crate) fn partial_writer(name: &std::ffi::OsStr) -> Option<u32> {
    let rest = name.to_str()?.strip_prefix(PARTIAL_PREFIX)?;
    rest.split('-').next()?.parse().ok()
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // Named for this process, so that what a killed one left half
    // written can be told from what a live one is writing.
    let mut file = tempfile::Builder::new()
        .prefix(&format!("{PARTIAL_PREFIX}{}-", std::process::id()))
        .tempfile_in(dir)
        .with_context(|| format!("{}: cannot create a file beside it", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    // Readable like any report, not 0600 as temporary files are made.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("{}: cannot set its permissions", path.display()))?;
    file.persist(path)
        .with_context(|| format!("{}: cannot replace it", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_a_device_and_a_large_file_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_bounded(dir.path(), 10),
            Err(FileProblem::NotRegular("a directory"))
        ));
        assert!(matches!(
            read_bounded(Path::new("/dev/zero"), 10),
            Err(FileProblem::NotRegular("a character device"))
        ));
        let big = dir.path().join("big");
        File::create(&big).unwrap().set_len(1 << 30).unwrap();
        assert!(matches!(
            read_bounded(&big, 1024),
            Err(FileProblem::TooLarge { size, max: 1024 }) if size == 1 << 30
        ));
        let small = dir.path().join("small");
        std::fs::write(&small, b"hello").unwrap();
        assert_eq!(read_bounded(&small, 5).unwrap(), b"hello");
    }
}
