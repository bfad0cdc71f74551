//! The agent's threads and channels: the one module that spawns threads and
//! makes channels, so the data flow is all here, one file per thread role.
//!
//! Each tenant runs four long-lived threads, and a fifth, the encode
//! thread's helper, from its first scan page on:
//!
//! ```text
//!  fetch ──page (hand-over)──▶ encode ──batches (8)──▶ writer ──▶ receiver
//!    ▲  ◀──verdict (1)─────────┘ ▲ │ │ ▲                  │
//!    └───spare page buffers (1)──┘ │ │ └──confirmed───────┘
//!                                  │ └──pieces──▶ helper (scan pages)
//!                                  └──confirmed pages (64)──▶ checkpoint
//! ```
//!
//! * [`fetch`]: schedules the data types, waits for the request budget,
//!   reads each response into a recycled buffer, splits it into records
//!   and reads its paging facts ([`crate::parse::page`]), and hands it
//!   over. The next request depends on the page: after a scan page (a
//!   backfill's 5,000 records, all new) the fetcher knows the next cursor
//!   itself and goes on as soon as the encoder takes the page, so fetching,
//!   splitting and encoding overlap; after any other page (at most 100
//!   records) it waits for the encoder's verdict, which needs the records.
//!   A page that does not split or has no paging facts, or that the
//!   encoder rejects, is fetched again. The Graph data types walk time
//!   windows instead ([`crate::source::graph::window`]): each answer waits
//!   for its verdict, which carries the window cursor after it.
//! * [`encode`]: parses each record once (simd-json), moves the cursor
//!   (for a Graph answer: drops what the window cursor delivered before),
//!   encodes the new records straight into recycled batches of about
//!   [`crate::sink::BATCH_BYTES`], and when the writer hands back a page's
//!   last batch, confirmed, passes the page's cursor to the checkpoint
//!   thread. A scan page's records are shared with a [`helper`] thread.
//! * [`checkpointer`]: saves each confirmed page's cursor (two `fsync`s,
//!   off the encoding thread) and only then counts its records as sent.
//! * [`writer`]: the sink's writer thread ([`crate::sink`]) and the
//!   encoder's handle on it.
//!
//! Every channel a producer sends into is bounded, so a receiver that is
//! down fills the batch channel, the encoder blocks, the fetcher waits for
//! its verdict, and no more requests are made: memory stays bounded and
//! nothing is lost. (The writer's channel of confirmed batches is not
//! bounded, but it only ever holds batches that went through the bounded
//! one.) A crash repeats only the unconfirmed pages.
//!
//! The service ([`serve`], in [`supervisor`]) starts one such group per
//! tenant ([`tenant`]), so one tenant's dead receiver stalls only that
//! tenant, and supervises them: it logs state transitions, writes status
//! files, reloads the configuration, serves [`metrics`], and shuts down
//! cleanly (stop fetching, drain, confirm, checkpoint). [`replay`] drives
//! the same encode stage and writer over files.

pub mod checkpointer;
pub mod encode;
pub mod error;
pub mod fetch;
pub mod helper;
pub mod metrics;
pub mod replay;
pub mod supervisor;
pub mod tenant;
pub mod writer;

pub use error::RunError;
pub use helper::SCAN_CHUNK_RECORDS;
pub use supervisor::{serve, Control};
pub use writer::{spawn_sink, SinkHandle};

/// What a finished run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Records fetched as new and handed on for delivery.
    pub records: u64,
    /// Pages fetched.
    pub pages: u64,
}

impl std::ops::AddAssign for RunSummary {
    fn add_assign(&mut self, other: Self) {
        self.records += other.records;
        self.pages += other.pages;
    }
}
