//! The hot path allocates nothing per record: counted, not assumed.
//!
//! A counting global allocator wraps the system one for this test binary.
//! Counts are per thread, so tests running in parallel do not disturb each
//! other's numbers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use siem_agent::cef::{Encoder, Mapping};
use siem_agent::parse::{InputReader, Item};
use siem_agent::syslog::{HeaderStyle, SyslogHeader};

use siem_agent::cef::cases::{ActivityCase, AlertCase, CASE_STRINGS};

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
        // SAFETY: same layout the caller gave us, per the trait contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: `ptr`/`layout` came from this allocator, i.e. from System.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// 10,000 records of both kinds, with escapes, Unicode, IPv4 and IPv6
/// addresses, missing fields and long values, as NDJSON.
fn varied_records() -> String {
    let mut ndjson = String::new();
    let words = [
        "plain",
        "a=b",
        "pipe|",
        "back\\slash",
        "line\nbreak",
        "tab\tx",
        "ünïcødé ✓",
        "",
    ];
    for n in 0..10_000usize {
        let pick = |k: usize| words[(n / (k + 1) + k) % words.len()].repeat(1 + n % 3);
        let strings: Vec<String> = (0..CASE_STRINGS).map(pick).collect();
        let mut strings = strings;
        strings[6] = match n % 3 {
            0 => format!("10.0.{}.{}", n % 256, n / 256 % 256),
            1 => format!("2001:db8::{:x}", n),
            _ => "not an ip".to_owned(),
        };
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

#[test]
fn encoding_allocates_nothing_per_record() {
    let input = varied_records();
    for style in [HeaderStyle::Iso, HeaderStyle::Rfc3164, HeaderStyle::Rfc5424] {
        let mut encoder = encoder(style);
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
        assert_eq!(encoded, 10_000);
        assert_eq!(during_encode, 0, "{style:?}: allocations while encoding");
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

#[test]
fn a_page_costs_the_same_allocations_whatever_its_record_count() {
    use siem_agent::data_type::DataType;
    use siem_agent::parse::page::SplitPage;
    use siem_agent::parse::Parser;
    use siem_agent::source::cas::cursor::Cursor;

    // The encoder thread's path: split the page, read its paging facts
    // from the rest, then parse, judge and encode each record in place.
    let cursor = Cursor::start(DataType::Activities, 1_700_000_000_000, 3_600_000);
    let mut parser = Parser::new();
    let mut split = SplitPage::default();
    let mut scratch = Vec::new();
    let mut encoder = encoder(HeaderStyle::Iso);
    let mut batch = Vec::with_capacity(16 * 1024 * 1024);
    let mut cost = |count: u64| {
        let page = scan_page(count);
        let mut counted = 0;
        for pass in 0..2 {
            let mut bytes = page.clone();
            batch.clear();
            let before = allocations();
            split.split(&bytes).expect("a page");
            let (has_next, upper) = parser
                .inspect(&mut split.rest, |root| cursor.page_facts(root))
                .expect("parses")
                .expect("facts");
            let mut advance = cursor.begin_page(&mut scratch);
            let mut delivered = 0u64;
            for range in &split.records {
                parser
                    .inspect(&mut bytes[range.clone()], |root| {
                        let record = root.as_object().expect("an object");
                        let (id, key) = cursor.record_facts(&record);
                        if advance.record(id, key) {
                            encoder.encode(&record, &mut batch);
                            batch.push(b'\n');
                            delivered += 1;
                        }
                    })
                    .expect("parses");
            }
            let next = advance.finish(has_next, upper).expect("moves");
            let after = allocations();
            std::hint::black_box(next);
            if pass == 1 {
                counted = after - before;
            }
            assert_eq!(delivered, count, "every record of a scan page is new");
        }
        counted
    };
    let small = cost(100);
    let large = cost(2_000);
    assert_eq!(
        small, large,
        "allocations per page grow with its records: 100 records {small}, 2,000 records {large}"
    );
    assert!(small < 20, "{small} allocations for one page");
}
