//! The hot path allocates nothing per record: counted, not assumed, on the
//! stage functions the pipeline's threads run.
//!
//! A counting global allocator wraps the system one for this test binary.
//! Counts are per thread, so tests running in parallel do not disturb each
//! other's numbers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use siem_agent::cef::cases::{ActivityCase, AlertCase, CASE_STRINGS};
use siem_agent::cef::graph_cases::{CloudAppEventCase, GraphAlertCase, GRAPH_CASE_STRINGS};
use siem_agent::cef::{Encoder, Mapping};
use siem_agent::data_type::DataType;
use siem_agent::parse::page::SplitPage;
use siem_agent::parse::{InputReader, Item, Parser};
use siem_agent::pipeline::encode::EncodeStage;
use siem_agent::pipeline::fetch::{read_page, Page, PageBuffers, PageOrigin, Verdict};
use siem_agent::pipeline::writer::spawn_writer;
use siem_agent::pipeline::SCAN_CHUNK_RECORDS;
use siem_agent::source::cas::cursor::Cursor;
use siem_agent::status::TenantStatus;
use siem_agent::syslog::{HeaderStyle, SyslogHeader};

thread_local! {
    // `const` initialisation: no lazy set-up that could itself allocate.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct CountingAllocator;

// SAFETY: a test needs to observe allocations, which only a global allocator
// can. Every method forwards its arguments unchanged to `System`, which
// upholds the `GlobalAlloc` contract; the only addition is a thread-local
// counter update, which neither allocates nor touches the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        count_for_thread();
        // SAFETY: same layout the caller gave us, per the trait contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        count_for_thread();
        // SAFETY: `ptr`/`layout` came from this allocator, i.e. from System.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Threads counted one by one, so that a test can read the counts of
/// threads it did not start (a pipeline's) by their Linux thread ids; the
/// threads past this many share the last slot, which has no id.
const THREAD_SLOTS: usize = 8192;
static THREAD_ALLOCATIONS: [AtomicU64; THREAD_SLOTS] = [const { AtomicU64::new(0) }; THREAD_SLOTS];
static THREAD_IDS: [AtomicI32; THREAD_SLOTS] = [const { AtomicI32::new(0) }; THREAD_SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Counts one allocation in this thread's slot, taking a slot on the
/// thread's first allocation. Neither allocates: `gettid` is a system call,
/// and the thread-local has a `const` initialiser and no destructor.
fn count_for_thread() {
    let slot = SLOT.with(|slot| {
        if slot.get() == usize::MAX {
            let taken = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
            if taken < THREAD_SLOTS - 1 {
                // SAFETY: gettid has no preconditions and cannot fail.
                THREAD_IDS[taken].store(unsafe { libc::gettid() }, Ordering::Relaxed);
                slot.set(taken);
            } else {
                slot.set(THREAD_SLOTS - 1);
            }
        }
        slot.get()
    });
    THREAD_ALLOCATIONS[slot].fetch_add(1, Ordering::Relaxed);
}

/// Allocations so far of each thread that has allocated, by Linux thread
/// id.
pub(crate) fn allocations_by_thread() -> std::collections::HashMap<i32, u64> {
    let taken = NEXT_SLOT.load(Ordering::Relaxed).min(THREAD_SLOTS - 1);
    (0..taken)
        .map(|slot| {
            (
                THREAD_IDS[slot].load(Ordering::Relaxed),
                THREAD_ALLOCATIONS[slot].load(Ordering::Relaxed),
            )
        })
        .filter(|&(tid, _)| tid != 0)
        .collect()
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Allocations so far on this thread.
pub(crate) fn allocations_here() -> u64 {
    allocations()
}

/// Text with every character class the encoder treats specially.
const HOSTILE_WORDS: [&str; 8] = [
    "plain",
    "a=b",
    "pipe|",
    "back\\slash",
    "line\nbreak",
    "tab\tx",
    "ünïcødé ✓",
    "",
];

/// The strings of record `n`: `count` picks from `words`, repeated up to
/// three times, and in slot 6 an IPv4 address, an IPv6 address or neither.
fn varied_strings(n: usize, count: usize, words: &[&str]) -> Vec<String> {
    let pick = |k: usize| words[(n / (k + 1) + k) % words.len()].repeat(1 + n % 3);
    let mut strings: Vec<String> = (0..count).map(pick).collect();
    strings[6] = match n % 3 {
        0 => format!("10.0.{}.{}", n % 256, n / 256 % 256),
        1 => format!("2001:db8::{n:x}"),
        _ => "not an ip".to_owned(),
    };
    strings
}

/// 10,000 records of both kinds, with escapes, Unicode, IPv4 and IPv6
/// addresses, missing fields and long values, as NDJSON.
fn varied_records() -> String {
    let mut ndjson = String::new();
    for n in 0..10_000usize {
        let mut strings = varied_strings(n, CASE_STRINGS, &HOSTILE_WORDS);
        strings[9] = strings[6].clone();
        let json = if n % 2 == 0 {
            ActivityCase::from_strings(
                &strings,
                [14509, 11161, 99_999][n % 3],
                1_500_000_000_000 + n as i64,
            )
            .to_json()
        } else {
            strings[1].push_str("title");
            AlertCase::from_strings(
                &strings,
                [(n % 5) as i64, n as i64, 10489],
                1_500_000_000_000,
            )
            .to_json()
        };
        ndjson.push_str(&json);
        ndjson.push('\n');
    }
    ndjson
}

fn encoder(style: HeaderStyle) -> Encoder {
    let header = SyslogHeader::new(style, Some("host".into()), 16).expect("valid");
    Encoder::new("1.0.0", "https://portal.example", header, Mapping::Auto)
}

#[test]
fn the_counter_sees_allocations() {
    let before = allocations();
    let buffer: Vec<u8> = Vec::with_capacity(100);
    std::hint::black_box(&buffer);
    assert!(
        allocations() > before,
        "the counting allocator is not in use"
    );
}

/// Encodes every record of `input` twice (the first pass warms up); the
/// records encoded and the allocations made inside `encode` on the second.
fn encode_twice(encoder: &mut Encoder, input: &str) -> (u64, u64) {
    let mut reader = InputReader::new();
    let mut line = Vec::with_capacity(64 * 1024);
    let mut encoded = 0u64;
    let mut during_encode = 0u64;
    for pass in 0..2 {
        reader
            .read(input.as_bytes(), |item| {
                let Item::Record(record) = item else {
                    panic!("generated input is valid")
                };
                line.clear();
                let before = allocations();
                encoder.encode(record, &mut line);
                let after = allocations();
                if pass == 1 {
                    encoded += 1;
                    during_encode += after - before;
                }
            })
            .expect("in memory");
    }
    (encoded, during_encode)
}

#[test]
fn encoding_allocates_nothing_per_record() {
    let input = varied_records();
    for style in [HeaderStyle::Iso, HeaderStyle::Rfc3164, HeaderStyle::Rfc5424] {
        let (encoded, during_encode) = encode_twice(&mut encoder(style), &input);
        assert_eq!(encoded, 10_000);
        assert_eq!(during_encode, 0, "{style:?}: allocations while encoding");
    }
}

/// 4,000 Graph records, alerts and hunting rows, with the same hostile
/// strings, addresses of both families, known and unknown app ids, and
/// times across the range, as NDJSON.
fn varied_graph_records() -> String {
    // The same words and a principal name, for the `suser` rules.
    let words = [HOSTILE_WORDS.as_slice(), &["u@x.com"]].concat();
    let mut ndjson = String::new();
    for n in 0..4_000usize {
        let strings = varied_strings(n, GRAPH_CASE_STRINGS, &words);
        let time = (
            (n as i64) * 86_400_123 % 253_402_300_799_999,
            (n % 10_000) as u16,
        );
        let json = if n % 2 == 0 {
            let severity = ["informational", "low", "medium", "high", "unknown"][n % 5];
            let apps = [Some(10489), (n % 4 != 0).then_some(n as u64)];
            GraphAlertCase::from_strings(&strings, severity.to_owned(), apps, [time; 4]).to_json()
        } else {
            CloudAppEventCase::from_strings(&strings, [20892, 11161, 99_999][n % 3], time).to_json()
        };
        ndjson.push_str(&json);
        ndjson.push('\n');
    }
    ndjson
}

#[test]
fn encoding_graph_records_allocates_nothing_per_record() {
    let input = varied_graph_records();
    for mapping in [Mapping::Auto, Mapping::GraphAlerts, Mapping::CloudAppEvents] {
        for style in [HeaderStyle::Iso, HeaderStyle::Rfc5424] {
            let header = SyslogHeader::new(style, Some("host".into()), 16).expect("valid");
            let mut encoder = Encoder::new("1.0.0", "https://portal.example", header, mapping);
            let (encoded, during_encode) = encode_twice(&mut encoder, &input);
            assert_eq!(encoded, 4_000);
            assert_eq!(
                during_encode, 0,
                "{mapping:?} {style:?}: allocations while encoding"
            );
        }
    }
}

#[test]
fn parsing_and_encoding_ndjson_allocates_nothing_after_warm_up() {
    let input = varied_records();
    let mut encoder = encoder(HeaderStyle::Iso);
    let mut reader = InputReader::new();
    let mut batch = Vec::with_capacity(8 * 1024 * 1024);
    let mut run = |batch: &mut Vec<u8>| {
        batch.clear();
        reader
            .read(input.as_bytes(), |item| {
                if let Item::Record(record) = item {
                    encoder.encode(record, batch);
                    batch.push(b'\n');
                }
            })
            .expect("in memory")
    };
    run(&mut batch); // warm-up: buffers grow to the largest line
    let before = allocations();
    let stats = run(&mut batch);
    let during = allocations() - before;
    assert_eq!(stats.records, 10_000);
    assert_eq!(during, 0, "allocations while reading 10,000 NDJSON records");
}

/// A scan page of `count` simulated activities, as the API sends it.
fn scan_page(count: u64) -> Vec<u8> {
    let config = siem_agent::simulator::SimulatorConfig::new(
        1_700_000_000_000,
        std::time::Duration::from_secs(3600),
    );
    let mut page = b"{\"data\":[".to_vec();
    for index in 0..count {
        if index > 0 {
            page.push(b',');
        }
        config.activities.write_record(index, &mut page);
    }
    page.extend_from_slice(
        b"],\"hasNext\":true,\"nextQueryFilters\":{\"date\":{\"lte\":1699999999999}}}",
    );
    page
}

/// The fetcher's and the encoder's work on one page, through the real
/// stage functions, with a writer that holds the batches until the test
/// lets it return them: so the pool of spare batches is the same at the
/// start of every page, and the count does not depend on thread timing.
struct PagePath {
    stage: EncodeStage,
    parser: Parser,
    split: SplitPage,
    cursor: Cursor,
    release: crossbeam_channel::Sender<()>,
    verdicts: crossbeam_channel::Sender<Verdict>,
    _verdicts_out: crossbeam_channel::Receiver<Verdict>,
}

impl PagePath {
    fn new() -> Self {
        let (release, released) = crossbeam_channel::unbounded::<()>();
        let sink = spawn_writer("alloc-writer", move |batches, mut returned, health| {
            let mut held = Vec::new();
            loop {
                crossbeam_channel::select! {
                    recv(batches) -> batch => match batch {
                        Ok(batch) => {
                            health.counters.queued.fetch_sub(1, Ordering::Relaxed);
                            held.push(batch);
                        }
                        Err(_) => return Ok(()),
                    },
                    recv(released) -> _ => {
                        for batch in held.drain(..) {
                            returned.send(batch);
                        }
                    }
                }
            }
        })
        .expect("writer thread");
        let status = Arc::new(TenantStatus::new("alloc", &[DataType::Activities]));
        let (verdicts, verdicts_out) = crossbeam_channel::bounded(1);
        Self {
            stage: EncodeStage::new(encoder(HeaderStyle::Iso), sink, status),
            parser: Parser::new(),
            split: SplitPage::default(),
            cursor: Cursor::start(DataType::Activities, 1_700_000_000_000, 3_600_000),
            release,
            verdicts,
            _verdicts_out: verdicts_out,
        }
    }

    /// Allocations on this thread for reading and encoding `page`, and
    /// the records it delivered.
    fn cost(&mut self, page: &[u8]) -> (u64, usize) {
        let mut bytes = page.to_vec();
        let mut split = std::mem::take(&mut self.split);
        let cursor = self.cursor.clone();
        let before = allocations();
        let facts = read_page(&mut self.parser, &mut split, &bytes, &cursor).expect("a valid page");
        let records = split.records.len();
        let mut page = Page {
            buffers: PageBuffers {
                bytes: std::mem::take(&mut bytes),
                split,
            },
            origin: PageOrigin::Cas(cursor),
            facts,
        };
        self.stage
            .encode_page(&mut page, &self.verdicts)
            .expect("encoded");
        let during = allocations() - before;
        // Let the writer hand every batch back, and take them into the pool.
        let sink = self.stage.sink();
        let deadline = Instant::now() + Duration::from_secs(60);
        while sink.health.counters.queued.load(Ordering::Relaxed) > 0 {
            assert!(Instant::now() < deadline, "the writer took no batches");
            std::thread::yield_now();
        }
        let sent = records.div_ceil(SCAN_CHUNK_RECORDS).max(1);
        self.release.send(()).expect("writer");
        while self.stage.sink().returned().len() < sent {
            assert!(Instant::now() < deadline, "the writer returned no batches");
            std::thread::yield_now();
        }
        let mut confirmed = 0;
        self.stage
            .collect(|_, records| {
                confirmed += records;
                Ok::<(), ()>(())
            })
            .expect("no checkpoint to fail");
        assert_eq!(confirmed, records, "every record of the page confirmed");
        self.split = page.buffers.split;
        (during, records)
    }

    /// The allocations of a page of `count` records in the steady state,
    /// over eight passes after a warm-up: the fewest, and the most.
    fn steady_cost(&mut self, count: u64) -> (u64, u64) {
        let page = scan_page(count);
        let (mut fewest, mut most) = (u64::MAX, 0);
        for pass in 0..9 {
            let (cost, records) = self.cost(&page);
            assert_eq!(records as u64, count, "every record of a scan page is new");
            if pass > 0 {
                fewest = fewest.min(cost);
                most = most.max(cost);
            }
        }
        (fewest, most)
    }
}

#[test]
fn a_page_costs_the_same_allocations_whatever_its_record_count() {
    let mut path = PagePath::new();
    // Pages the encoding thread does alone (at most one piece): exactly the
    // same, whatever their size.
    let one_thread_small = path.steady_cost(100);
    let one_thread_large = path.steady_cost(SCAN_CHUNK_RECORDS as u64);
    assert_eq!(
        one_thread_small, one_thread_large,
        "allocations per page grow with its records: 100 records {one_thread_small:?}, \
         {SCAN_CHUNK_RECORDS} records {one_thread_large:?}"
    );
    // Pages shared with the helper thread, in whole pieces (at most as many
    // as the pool keeps spare batches). The helper lives as long as the
    // stage and the piece buffers come back for the next page, so the
    // steady state costs nothing; when this thread has to wait for the
    // helper, crossbeam may allocate the channel's list of waiters (up to
    // two allocations a page that depend on timing, not on the page). So
    // the fewest are compared, and the spread is bounded; one allocation
    // per piece would add at least three to every pass.
    let (shared_small, small_most) = path.steady_cost(3 * SCAN_CHUNK_RECORDS as u64);
    let (shared_large, large_most) = path.steady_cost(7 * SCAN_CHUNK_RECORDS as u64);
    assert_eq!(
        (one_thread_small.0, shared_small, shared_large),
        (0, 0, 0),
        "allocations per page in the steady state: one thread {one_thread_small:?}, \
         3 pieces {shared_small}-{small_most}, 7 pieces {shared_large}-{large_most}"
    );
    assert!(
        small_most <= 2 && large_most <= 2,
        "more than the waits explain: 3 pieces {shared_small}-{small_most}, \
         7 pieces {shared_large}-{large_most}"
    );
}

#[test]
fn reading_relp_answers_allocates_nothing() {
    use siem_agent::sink::relp::{parse_frame, write_frame, ServerFrame};
    // A window's worth of answers, as the writer reads them per line.
    let mut answers = Vec::new();
    for txnr in 1..=1_000u32 {
        write_frame(&mut answers, txnr, "rsp", b"200 OK");
    }
    let before = allocations();
    let mut at = 0;
    let mut answered = 0u32;
    while let Ok(Some((frame, used))) = parse_frame(&answers[at..]) {
        if let ServerFrame::Response { code: 200, .. } = frame {
            answered += 1;
        }
        at += used;
    }
    let during = allocations() - before;
    assert_eq!(answered, 1_000);
    assert_eq!(during, 0, "allocations while reading 1,000 RELP answers");
}
