//! Replacing a small file so that a crash at any instant leaves either the
//! old or the new contents, never a torn file: write a temporary file with
//! mode 0600, fsync it, rename it over the old one, fsync the directory.
//!
//! Checkpoints need this for correctness (a torn checkpoint would repeat or
//! skip records); status files use it so that a reader never sees half a
//! report.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Suffix of the temporary file written before the rename.
pub const TEMPORARY_SUFFIX: &str = ".tmp";

/// A file could not be replaced.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct AtomicWriteError {
    /// The file or directory that failed.
    pub path: PathBuf,
    /// The cause.
    pub source: std::io::Error,
}

/// Replaces `path` (in `dir`) with `bytes` atomically and durably.
pub fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    AtomicTarget::new(path.to_owned()).write(dir, bytes)
}

/// A file replaced again and again (a checkpoint, after every page): its
/// path and its temporary file's, made once.
#[derive(Debug, Clone)]
pub struct AtomicTarget {
    path: PathBuf,
    temporary: PathBuf,
}

impl AtomicTarget {
    /// The target `path` and its temporary file beside it.
    pub fn new(path: PathBuf) -> Self {
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(TEMPORARY_SUFFIX);
        Self {
            path,
            temporary: PathBuf::from(temporary),
        }
    }

    /// The file replaced.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file (in `dir`) with `bytes` atomically and durably.
    /// Allocates only for an error (the paths are short enough for the
    /// standard library to pass them to the kernel from the stack).
    pub fn write(&self, dir: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
        fn failed(path: &Path) -> impl FnOnce(std::io::Error) -> AtomicWriteError + '_ {
            move |source| AtomicWriteError {
                path: path.to_owned(),
                source,
            }
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.temporary)
            .map_err(failed(&self.temporary))?;
        file.write_all(bytes).map_err(failed(&self.temporary))?;
        file.sync_all().map_err(failed(&self.temporary))?;
        drop(file);
        fs::rename(&self.temporary, &self.path).map_err(failed(&self.path))?;
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(failed(dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn replaces_the_file_privately_and_leaves_no_temporary(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = crate::test_support::scratch_path("atomic");
        fs::create_dir_all(&dir)?;
        let path = dir.join("file.json");
        write_atomically(&dir, &path, b"old")?;
        write_atomically(&dir, &path, b"new")?;
        assert_eq!(fs::read(&path)?, b"new");
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(&dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        assert_eq!(names, ["file.json"]);
        let _ = fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn a_missing_directory_is_named_in_the_error() {
        let dir = crate::test_support::scratch_path("atomic-missing");
        let error = match write_atomically(&dir, &dir.join("f"), b"x") {
            Err(error) => error,
            Ok(()) => panic!("wrote into a missing directory"),
        };
        assert!(error.path.starts_with(&dir), "{error}");
    }
}
