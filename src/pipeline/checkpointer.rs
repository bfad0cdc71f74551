//! The checkpoint thread: saving a checkpoint takes two `fsync`s (about
//! half a millisecond on this project's test machine, far more on a busy
//! or network disk), and the encoding thread should not stop for them.
//! Pages the writer confirmed reach it over a bounded channel; it saves
//! their cursors and only then counts their records as sent.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::RunError;
use crate::source::Position;
use crate::state::checkpoint::CheckpointStore;
use crate::status::TenantStatus;

/// Confirmed pages waiting for the checkpoint thread. When it falls behind
/// (a slow disk), it saves only the newest cursor of each data type it
/// finds queued, so it catches up in one save.
pub const CHECKPOINT_CHANNEL_PAGES: usize = 64;

/// A confirmed page for the checkpoint thread.
struct Confirmed {
    position: Position,
    records: usize,
}

/// The encoding thread's end of the checkpoint thread: saving a
/// checkpoint takes two `fsync`s (about half a millisecond on this
/// project's test machine, far more on a busy or network disk), and the
/// encoding thread should not stop for them.
pub(super) struct CheckpointSaver {
    confirmed: Option<Sender<Confirmed>>,
    thread: Option<JoinHandle<Result<(), RunError>>>,
}

impl CheckpointSaver {
    /// Starts the checkpoint thread of `status`'s tenant.
    pub(super) fn spawn(
        store: CheckpointStore,
        status: Arc<TenantStatus>,
    ) -> Result<Self, RunError> {
        let (confirmed_in, confirmed_out) =
            crossbeam_channel::bounded::<Confirmed>(CHECKPOINT_CHANNEL_PAGES);
        let thread = std::thread::Builder::new()
            .name(format!("checkpoint-{}", status.tenant))
            .spawn(move || save_checkpoints(&store, &status, &confirmed_out))
            .map_err(RunError::Spawn)?;
        Ok(Self {
            confirmed: Some(confirmed_in),
            thread: Some(thread),
        })
    }

    /// Queues a confirmed page's cursor (waits when the thread is
    /// [`CHECKPOINT_CHANNEL_PAGES`] behind). Fails with the thread's error
    /// if it stopped because a save failed.
    pub(super) fn save(&mut self, position: Position, records: usize) -> Result<(), RunError> {
        let sent = match &self.confirmed {
            Some(confirmed) => confirmed.send(Confirmed { position, records }).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            self.finish()
        }
    }

    /// The thread's error, if a save failed since the last look: a run
    /// ends on it without waiting for the next page to be confirmed.
    pub(super) fn check(&mut self) -> Result<(), RunError> {
        match &self.thread {
            Some(thread) if thread.is_finished() => self.finish(),
            _ => Ok(()),
        }
    }

    /// Waits until every queued checkpoint is saved and the thread has
    /// ended; its error, if a save failed.
    pub(super) fn finish(&mut self) -> Result<(), RunError> {
        // Closing the channel ends the thread once it has saved the rest.
        self.confirmed = None;
        match self.thread.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(error))) => Err(error),
            Some(Err(_)) => Err(RunError::Panicked("checkpoint")),
        }
    }
}

/// The checkpoint thread: saves each confirmed page's cursor and then
/// counts its records as sent. Pages that queued up while a save ran are
/// saved together: only the newest cursor of each data type is written,
/// since it covers the pages before it.
fn save_checkpoints(
    store: &CheckpointStore,
    status: &TenantStatus,
    confirmed: &Receiver<Confirmed>,
) -> Result<(), RunError> {
    let mut writer = store.writer(&status.tenant);
    let mut newest: Vec<Confirmed> = Vec::with_capacity(crate::data_type::DataType::ALL.len());
    while let Ok(first) = confirmed.recv() {
        newest.push(first);
        for next in confirmed.try_iter() {
            match newest
                .iter_mut()
                .find(|c| c.position.kind() == next.position.kind())
            {
                Some(older) => {
                    older.records += next.records;
                    older.position = next.position;
                }
                None => newest.push(next),
            }
        }
        for page in newest.drain(..) {
            writer.save(&page.position)?;
            let counters = status.counters(page.position.kind());
            counters
                .sent
                .fetch_add(page.records as u64, Ordering::Relaxed);
            counters
                .checkpoint_ms
                .store(page.position.delivered_until(), Ordering::Relaxed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::data_type::DataType;
    use crate::exit;
    use crate::source::cas::cursor::Cursor;

    fn state_dir(name: &str) -> PathBuf {
        crate::test_support::scratch_path(&format!("pipeline-{name}"))
    }

    fn cursor(kind: DataType, position: i64) -> Position {
        Position::Cas(Cursor {
            kind,
            position,
            boundary_ids: vec![format!("id-at-{position}")],
            skip: 0,
            scan: None,
            ahead: Vec::new(),
        })
    }

    #[test]
    fn the_checkpoint_thread_saves_the_newest_cursor_of_each_kind_and_counts_every_page(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = state_dir("saver");
        let store = CheckpointStore::open(&dir)?;
        let kinds = [DataType::Activities, DataType::Alerts];
        let status = Arc::new(TenantStatus::new("t1", &kinds));
        let mut saver = CheckpointSaver::spawn(store.clone(), Arc::clone(&status))?;
        for (position, records) in [(10, 100), (20, 7), (30, 1)] {
            saver.save(cursor(DataType::Activities, position), records)?;
        }
        saver.save(cursor(DataType::Alerts, 5), 3)?;
        saver.finish()?;

        let activities = store.load("t1", DataType::Activities)?;
        assert_eq!(
            activities.map(Position::Cas),
            Some(cursor(DataType::Activities, 30))
        );
        let alerts = store.load("t1", DataType::Alerts)?;
        assert_eq!(alerts.map(Position::Cas), Some(cursor(DataType::Alerts, 5)));
        let counters = status.counters(DataType::Activities);
        assert_eq!(counters.sent.load(Ordering::Relaxed), 108);
        assert_eq!(counters.checkpoint_ms.load(Ordering::Relaxed), 30);
        let counters = status.counters(DataType::Alerts);
        assert_eq!(counters.sent.load(Ordering::Relaxed), 3);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn a_checkpoint_that_cannot_be_saved_ends_the_run_with_its_error_and_counts_nothing(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = state_dir("unwritable");
        let store = CheckpointStore::open(&dir)?;
        // The directory becomes a file: every save fails, even as root.
        std::fs::remove_dir(&dir)?;
        std::fs::write(&dir, b"not a directory")?;
        let status = Arc::new(TenantStatus::new("t1", &[DataType::Activities]));
        let mut saver = CheckpointSaver::spawn(store, Arc::clone(&status))?;

        // The page is queued; its save fails on the checkpoint thread, and
        // the encoding thread's next look (once a page) reports it.
        saver.save(cursor(DataType::Activities, 10), 5)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !saver.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            assert!(
                Instant::now() < deadline,
                "the checkpoint thread never failed"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let failure = match saver.check() {
            Err(error) => error,
            Ok(()) => panic!("the failed save was not reported"),
        };
        assert!(
            matches!(failure, RunError::Checkpoint(_)),
            "unexpected error: {failure}"
        );
        assert_eq!(failure.exit_code(), exit::CHECKPOINT);
        let counters = status.counters(DataType::Activities);
        assert_eq!(counters.sent.load(Ordering::Relaxed), 0);
        assert_eq!(counters.checkpoint_ms.load(Ordering::Relaxed), i64::MIN);
        let _ = std::fs::remove_file(&dir);
        Ok(())
    }
}
