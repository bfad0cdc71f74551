//! Durable cursors, one file per tenant and data type.
//!
//! A checkpoint is written only after the records before it were delivered,
//! and written so that a crash at any instant leaves either the old or the
//! new file, never a torn one: write a temporary file, fsync it, rename it
//! over the old one, fsync the directory. Files are created with mode 0600
//! (they reveal what a tenant's traffic looks like).
//!
//! A checkpoint that cannot be read stops the agent with the file's name:
//! starting over silently would either repeat two days of records or lose
//! the gap, and only the operator can choose.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use simd_json::prelude::*;
use simd_json::OwnedValue;

use super::atomic::{write_atomically, AtomicTarget, AtomicWriteError};
use super::names;
use crate::data_type::DataType;
use crate::source::cas::cursor::{Cursor, Scan};
use crate::source::graph::window::{Seen, WindowCursor};
use crate::source::Position;

/// Checkpoint format version.
pub const FORMAT_VERSION: u64 = 1;

/// The file written and removed at start-up to check the directory.
const WRITE_PROBE: &str = ".siem-agent-write-check";
/// Key of a legacy checkpoint's alerts ahead of the clock (`[date, id]`).
const AHEAD_KEY: &str = "ahead";
/// Key of a Graph checkpoint's delivered records (`[time, key]` pairs).
const SEEN_KEY: &str = "seen";
/// Key of the record field a Graph checkpoint's windows are over.
const TIME_FIELD_KEY: &str = "timeField";

/// What a Graph checkpoint file holds, borrowed from the cursor.
#[derive(serde::Serialize)]
struct GraphCheckpoint<'a> {
    version: u64,
    position: i64,
    floor: i64,
    #[serde(rename = "timeField")]
    time_field: &'a str,
    seen: SeenPairs<'a>,
}

/// Delivered records as `[time, key]` pairs.
struct SeenPairs<'a>(&'a BTreeSet<Seen>);

impl serde::Serialize for SeenPairs<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|seen| (seen.time_ms, seen.key.as_str())))
    }
}

/// A Graph data type's saved windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedWindows {
    /// The cursor.
    pub cursor: WindowCursor,
    /// The record field its windows were over.
    pub time_field: String,
}

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The state directory or a file could not be accessed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The state directory does not take files (read-only, full, or not
    /// the agent's to write).
    #[error(
        "state directory {dir}: cannot write checkpoints there ({source}); check its \
         owner and permissions, free space, and that it is not on a read-only file system"
    )]
    NotWritable {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A checkpoint could not be replaced.
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
    /// The cursor could not be written as JSON (a bug: please report it).
    #[error("{path}: cannot encode the checkpoint: {reason}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// What the encoder said.
        reason: String,
    },
    /// The file exists but does not hold a checkpoint of this version.
    #[error("{path}: not a valid checkpoint ({reason}); move it away to start over")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The checkpoint files of one state directory.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

impl CheckpointStore {
    /// Opens (creating with mode 0700 if needed) the state directory, and
    /// checks that a checkpoint can be written there: a read-only or full
    /// directory is refused before any line goes out, not after.
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| CheckpointError::Io {
                path: dir.to_owned(),
                source,
            })?;
        let probe = dir.join(WRITE_PROBE);
        let unwritable = |source: std::io::Error| CheckpointError::NotWritable {
            dir: dir.to_owned(),
            source,
        };
        write_atomically(dir, &probe, b"{}").map_err(|error| unwritable(error.source))?;
        fs::remove_file(&probe).map_err(unwritable)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The file for `tenant` and `kind`.
    pub fn path(&self, tenant: &str, kind: DataType) -> PathBuf {
        self.dir.join(names::checkpoint_file(tenant, kind))
    }

    /// The saved checkpoint's JSON, or `None` on a first start.
    fn read(
        &self,
        tenant: &str,
        kind: DataType,
    ) -> Result<Option<(OwnedValue, PathBuf)>, CheckpointError> {
        let path = self.path(tenant, kind);
        let mut bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CheckpointError::Io { path, source }),
        };
        let corrupt = |reason: &str| CheckpointError::Corrupt {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        let value = simd_json::to_owned_value(&mut bytes).map_err(|_| corrupt("invalid JSON"))?;
        if value.get_u64("version") != Some(FORMAT_VERSION) {
            return Err(corrupt("unknown version"));
        }
        Ok(Some((value, path)))
    }

    /// The saved cursor of a legacy data type, or `None` on a first start.
    pub fn load(&self, tenant: &str, kind: DataType) -> Result<Option<Cursor>, CheckpointError> {
        let Some((value, path)) = self.read(tenant, kind)? else {
            return Ok(None);
        };
        let corrupt = |reason: &str| CheckpointError::Corrupt {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        let int = |key: &str| value.get_i64(key).ok_or_else(|| corrupt(key));
        let boundary_ids = value
            .get_array("boundaryIds")
            .ok_or_else(|| corrupt("boundaryIds"))?
            .iter()
            .map(|id| {
                id.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| corrupt("boundaryIds"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let scan = match value.get("scan") {
            None => None,
            Some(scan) if scan.is_null() => None,
            Some(scan) => Some(Scan {
                date_low: scan.get_i64("dateLow"),
                date_upper: scan.get_i64("dateUpper"),
                created_from: scan.get_i64("createdFrom"),
                created_to: scan
                    .get_i64("createdTo")
                    .ok_or_else(|| corrupt("scan.createdTo"))?,
            }),
        };
        // Optional: checkpoints written before it existed have none.
        let ahead = match value.get_array(AHEAD_KEY) {
            None => Vec::new(),
            Some(pairs) => pairs
                .iter()
                .map(|pair| {
                    let key = pair.get_idx(0).and_then(|k| k.as_i64());
                    let id = pair.get_idx(1).and_then(|i| i.as_str());
                    match (key, id, pair.as_array().map(Vec::len)) {
                        (Some(key), Some(id), Some(2)) => Ok((key, id.to_owned())),
                        _ => Err(corrupt(AHEAD_KEY)),
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Some(Cursor {
            kind,
            ahead,
            position: int("position")?,
            boundary_ids,
            skip: value.get_u64("skip").ok_or_else(|| corrupt("skip"))?,
            scan,
        }))
    }

    /// The saved cursor of a Graph data type, with the record field its
    /// windows were over (a changed `graph_alerts_versions` changes it),
    /// or `None` on a first start.
    pub fn load_graph(
        &self,
        tenant: &str,
        kind: DataType,
    ) -> Result<Option<SavedWindows>, CheckpointError> {
        let Some((value, path)) = self.read(tenant, kind)? else {
            return Ok(None);
        };
        let corrupt = |reason: &str| CheckpointError::Corrupt {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        let int = |key: &str| value.get_i64(key).ok_or_else(|| corrupt(key));
        let seen = value
            .get_array(SEEN_KEY)
            .ok_or_else(|| corrupt(SEEN_KEY))?
            .iter()
            .map(|pair| {
                let time_ms = pair.get_idx(0).and_then(|t| t.as_i64());
                let key = pair.get_idx(1).and_then(|k| k.as_str());
                match (time_ms, key, pair.as_array().map(Vec::len)) {
                    (Some(time_ms), Some(key), Some(2)) => Ok(Seen {
                        time_ms,
                        key: key.to_owned(),
                    }),
                    _ => Err(corrupt(SEEN_KEY)),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(SavedWindows {
            cursor: WindowCursor {
                position: int("position")?,
                floor: int("floor")?,
                seen,
            },
            time_field: value
                .get_str(TIME_FIELD_KEY)
                .ok_or_else(|| corrupt(TIME_FIELD_KEY))?
                .to_owned(),
        }))
    }

    /// Replaces the saved position atomically and durably.
    pub fn save(&self, tenant: &str, position: &Position) -> Result<(), CheckpointError> {
        self.writer(tenant).save(position)
    }

    /// A writer of `tenant`'s checkpoints, for a thread that saves after
    /// every page.
    pub fn writer(&self, tenant: &str) -> CheckpointWriter {
        CheckpointWriter {
            dir: self.dir.clone(),
            targets: DataType::ALL
                .iter()
                .map(|&kind| AtomicTarget::new(self.path(tenant, kind)))
                .collect(),
            json: Vec::new(),
        }
    }

    /// The directory the files live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// One tenant's checkpoints, saved with the file paths and the JSON buffer
/// kept from one save to the next: the checkpoint thread saves after every
/// page, and a save allocates nothing in the steady state.
pub struct CheckpointWriter {
    dir: PathBuf,
    /// Each data type's file, by [`DataType::index`].
    targets: Vec<AtomicTarget>,
    json: Vec<u8>,
}

impl CheckpointWriter {
    /// Replaces the saved position atomically and durably.
    pub fn save(&mut self, position: &Position) -> Result<(), CheckpointError> {
        let json = &mut self.json;
        json.clear();
        let target = &self.targets[position.kind().index()];
        match position {
            Position::Cas(cursor) => write_cas(json, cursor),
            Position::Graph(graph) => {
                let saved = GraphCheckpoint {
                    version: FORMAT_VERSION,
                    position: graph.cursor.position,
                    floor: graph.cursor.floor,
                    time_field: graph.source.time_field(),
                    seen: SeenPairs(&graph.cursor.seen),
                };
                // Written straight from the cursor: a busy tenant's late
                // window holds tens of thousands of keys.
                simd_json::serde::to_writer(&mut *json, &saved).map_err(|error| {
                    CheckpointError::Encode {
                        path: target.path().to_owned(),
                        reason: error.to_string(),
                    }
                })?;
            }
        }
        Ok(target.write(&self.dir, json)?)
    }
}

/// A legacy cursor's checkpoint, as JSON.
fn write_cas(out: &mut Vec<u8>, cursor: &Cursor) {
    use crate::json::{write_int, write_optional_int, write_string};
    out.extend_from_slice(b"{\"version\":");
    write_int(out, FORMAT_VERSION);
    out.extend_from_slice(b",\"position\":");
    write_int(out, cursor.position);
    out.extend_from_slice(b",\"boundaryIds\":[");
    // (A slice's iterator: `Vec::iter` here would be simd-json's boxed one.)
    for (n, id) in cursor.boundary_ids.as_slice().iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_string(out, id);
    }
    out.extend_from_slice(b"],\"skip\":");
    write_int(out, cursor.skip);
    if !cursor.ahead.is_empty() {
        out.push(b',');
        write_string(out, AHEAD_KEY);
        out.extend_from_slice(b":[");
        for (n, (key, id)) in cursor.ahead.as_slice().iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.push(b'[');
            write_int(out, *key);
            out.push(b',');
            write_string(out, id);
            out.push(b']');
        }
        out.push(b']');
    }
    if let Some(scan) = &cursor.scan {
        out.extend_from_slice(b",\"scan\":{\"dateLow\":");
        write_optional_int(out, scan.date_low);
        out.extend_from_slice(b",\"dateUpper\":");
        write_optional_int(out, scan.date_upper);
        out.extend_from_slice(b",\"createdFrom\":");
        write_optional_int(out, scan.created_from);
        out.extend_from_slice(b",\"createdTo\":");
        write_int(out, scan.created_to);
        out.push(b'}');
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        crate::test_support::scratch_path(&format!("ckpt-{name}"))
    }

    #[test]
    fn round_trips_and_is_private() {
        let dir = temp_dir("roundtrip");
        let store = CheckpointStore::open(&dir).expect("opens");
        assert_eq!(store.load("t1", DataType::Activities).expect("reads"), None);
        let cursors = [
            Cursor::start(DataType::Activities, 1_000_000, 1000),
            Cursor {
                kind: DataType::Alerts,
                position: 42,
                boundary_ids: vec!["a".into(), "b\"quoted\\".into()],
                skip: 100,
                scan: None,
                ahead: vec![(4_102_444_800_000, "from 2100".into())],
            },
        ];
        for cursor in &cursors {
            store
                .save("t1", &Position::Cas(cursor.clone()))
                .expect("saves");
            assert_eq!(
                store.load("t1", cursor.kind).expect("reads").as_ref(),
                Some(cursor)
            );
        }
        let mode = fs::metadata(store.path("t1", DataType::Alerts))
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn graph_windows_round_trip_with_their_time_field() {
        use crate::source::graph::record::GraphSource;
        use crate::source::graph::request::AlertVersions;
        use crate::source::GraphPosition;
        let dir = temp_dir("graph");
        let store = CheckpointStore::open(&dir).expect("opens");
        let mut cursor = WindowCursor::start(1_000);
        cursor.position = 5_000;
        cursor.remember(4_000, "a \"quoted\" id");
        cursor.remember(4_000, "b");
        let source = GraphSource::Alerts(AlertVersions::All);
        let position = Position::Graph(GraphPosition {
            source,
            cursor: std::sync::Arc::new(cursor.clone()),
        });
        store.save("t1", &position).expect("saves");
        let saved = store
            .load_graph("t1", DataType::GraphAlerts)
            .expect("reads")
            .expect("saved");
        assert_eq!(saved.cursor, cursor);
        assert_eq!(saved.time_field, "lastUpdateDateTime");
        assert_eq!(
            store
                .load_graph("t1", DataType::CloudAppEvents)
                .expect("reads"),
            None
        );
        fs::write(
            store.path("t1", DataType::CloudAppEvents),
            br#"{"version":1,"position":1,"floor":1,"timeField":"Timestamp","seen":[[1]]}"#,
        )
        .expect("writes");
        let error = store
            .load_graph("t1", DataType::CloudAppEvents)
            .expect_err("a pair without its key");
        assert!(error.to_string().contains("seen"), "{error}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = temp_dir("corrupt");
        let store = CheckpointStore::open(&dir).expect("opens");
        let path = store.path("t1", DataType::Alerts);
        fs::write(&path, b"{\"version\":1,\"position\":").expect("writes");
        let error = store.load("t1", DataType::Alerts).expect_err("corrupt");
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_that_cannot_take_a_checkpoint_is_refused_at_open() {
        // Even root cannot create files in /proc/self.
        let error = CheckpointStore::open(Path::new("/proc/self")).expect_err("read-only");
        assert!(error.to_string().contains("/proc/self"), "{error}");
        let dir = temp_dir("probe");
        CheckpointStore::open(&dir).expect("writable");
        assert_eq!(
            fs::read_dir(&dir).expect("dir").count(),
            0,
            "the probe leaves nothing behind"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn tenant_names_cannot_escape_the_directory() {
        let store = CheckpointStore {
            dir: PathBuf::from("/state"),
        };
        assert_eq!(
            store.path("../../etc/x", DataType::Alerts),
            PathBuf::from("/state/.._.._etc_x.alerts.checkpoint.json")
        );
    }
}
