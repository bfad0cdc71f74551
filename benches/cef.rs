//! Micro-benchmarks of the CEF hot path: escaping, encoding one record,
//! parsing plus encoding a realistic API page parsed whole, and the same
//! page on the path `run` takes (split, each record parsed where it lies,
//! batches to a writer thread). `PERF.md` records the numbers and the
//! targets; run with `cargo bench --bench cef`.

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use siem_agent::cef::escape::{escape_extension, escape_header};
use siem_agent::cef::{Encoder, Mapping};
use siem_agent::data_type::DataType;
use siem_agent::parse::page::SplitPage;
use siem_agent::parse::Parser;
use siem_agent::pipeline::encode::EncodeStage;
use siem_agent::pipeline::fetch::{read_page, Page, PageBuffers, PageOrigin};
use siem_agent::pipeline::writer::spawn_writer;
use siem_agent::source::cas::cursor::Cursor;
use siem_agent::status::TenantStatus;
use siem_agent::syslog::{HeaderStyle, SyslogHeader};

/// The first official sample's record (the activity the encode target names).
const ACTIVITY: &str = include_str!("../tests/golden/activity-logout.json");
/// A page of five alerts from the golden fixtures; the first is benched.
const ALERTS: &str = include_str!("../tests/golden/alerts-0.102.17.json");
/// A Microsoft Graph `alerts_v2` page; its first alert is benched.
const GRAPH_ALERTS: &str = include_str!("../tests/golden/graph-alerts-page.json");
/// A `runHuntingQuery` result over `CloudAppEvents`; its first row is benched.
const CLOUD_APP_EVENTS: &str = include_str!("../tests/golden/cloud-app-events-result.json");
/// Records per page, the API's maximum with an API token.
const PAGE_RECORDS: usize = 100;

fn encoder() -> Encoder {
    encoder_with(Mapping::Auto)
}

fn encoder_with(mapping: Mapping) -> Encoder {
    let header = SyslogHeader::new(HeaderStyle::Iso, None, 16).expect("valid header");
    Encoder::new(
        "0.111.85",
        "https://contoso.portal.cloudappsecurity.com",
        header,
        mapping,
    )
}

/// A realistic activity of about 1.2 KB of compact JSON, varied by `n` so
/// that pages do not repeat one record.
fn realistic_activity(n: usize) -> String {
    let apps = [
        (
            15600,
            "Microsoft OneDrive for Business",
            "Download file",
            "FileDownloaded",
        ),
        (20893, "Microsoft Exchange Online", "Send mail", "Send"),
        (11114, "Salesforce", "View report", "ReportViewed"),
        (14509, "ServiceNow", "Delete object", "DeleteRecord"),
    ];
    let (app_id, app_name, operation, raw) = apps[n % apps.len()];
    let ts = 1_763_802_313_000u64 + n as u64 * 37;
    format!(
        concat!(
            r#"{{"_id":"{ts}_{app}_2f1c0c55-6a8e-4b57-9d0a-{n:012x}","tenantId":97134000,"appId":{app},"#,
            r#""appName":"{name}","timestamp":{ts},"created":{created},"eventTypeName":"EVENT_CATEGORY_DOWNLOAD_FILE","#,
            r#""eventTypeValue":"EVENT_O365_ONEDRIVE_GENERIC","description":"{op}: quarterly-report-{n}.xlsx","#,
            r#""severity":"INFO","confidenceLevel":20,"source":2,"#,
            r#""device":{{"clientIP":"203.0.{a}.{b}","userAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 Edg/131.0","countryCode":"NL"}},"#,
            r#""location":{{"countryCode":"NL","city":"Amsterdam","region":"North Holland","latitude":52.3676,"longitude":4.9041,"organizationSearchable":"Example ISP","anonymousProxy":false,"category":0}},"#,
            r#""user":{{"userName":"user{u}@contoso.com","userTags":["5f01dbbc68df27c17aa6ca81"]}},"#,
            r#""userAgent":{{"family":"EDGE","name":"Edge","os":"WINDOWS","browser":"EDGE","deviceType":"DESKTOP","version":"131.0"}},"#,
            r#""mainInfo":{{"eventObjects":[{{"id":"d1f0a2b3-0000-4c5d-9e8f-{n:012x}","name":"quarterly-report-{n}.xlsx","objType":3,"role":3,"tags":[]}},"#,
            r#"{{"id":"user{u}@contoso.com","name":"User {u}","objType":21,"role":4,"resolved":true,"tags":[]}}],"#,
            r#""prettyOperationName":"{op}","rawOperationName":"{raw}","type":"basic"}},"#,
            r#""internals":{{"otherIPs":["203.0.{a}.{b}"]}},"policies":[]}}"#
        ),
        ts = ts,
        created = ts + 2_840,
        app = app_id,
        name = app_name,
        op = operation,
        raw = raw,
        n = n,
        a = n / 256 % 256,
        b = n % 256,
        u = n % 1000,
    )
}

fn realistic_page() -> Vec<u8> {
    let records: Vec<String> = (0..PAGE_RECORDS).map(realistic_activity).collect();
    format!(
        r#"{{"data":[{}],"hasNext":true,"total":{}}}"#,
        records.join(","),
        PAGE_RECORDS
    )
    .into_bytes()
}

fn bench_escape(c: &mut Criterion) {
    let clean: String = "The quick brown fox jumps over the lazy dog 0123456789 "
        .chars()
        .cycle()
        .take(1024)
        .collect();
    let hostile: String = "a=b\\c|d\ne\rf\tg\u{0}h ünï "
        .chars()
        .cycle()
        .take(1024)
        .collect();
    let mut group = c.benchmark_group("escape");
    group.throughput(Throughput::Bytes(1024));
    let mut out = Vec::with_capacity(4096);
    for (name, text) in [("clean_ascii_1k", &clean), ("hostile_1k", &hostile)] {
        group.bench_function(format!("extension/{name}"), |b| {
            b.iter(|| {
                out.clear();
                escape_extension(&mut out, black_box(text));
                black_box(&out);
            })
        });
        group.bench_function(format!("header/{name}"), |b| {
            b.iter(|| {
                out.clear();
                escape_header(&mut out, black_box(text));
                black_box(&out);
            })
        });
    }
    group.finish();
}

/// Benchmarks encoding the first record of `json`, parsed once.
fn bench_encode_one(c: &mut Criterion, name: &str, json: &str, mapping: Mapping) {
    let mut encoder = encoder_with(mapping);
    let mut parser = Parser::new();
    let mut input = json.as_bytes().to_vec();
    let mut out = Vec::with_capacity(4096);
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    let mut benched = false;
    parser
        .parse_document(&mut input, |record| {
            if benched {
                return;
            }
            let Ok(record) = record else {
                panic!("bench input is valid")
            };
            benched = true;
            group.bench_function(name, |b| {
                b.iter(|| {
                    out.clear();
                    encoder.encode(black_box(record), &mut out);
                    black_box(&out);
                })
            });
        })
        .expect("bench input parses");
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    bench_encode_one(c, "activity", ACTIVITY, Mapping::Auto);
    bench_encode_one(c, "alert", ALERTS, Mapping::Auto);
    // What `run` does for the Graph data types (the mapping is known), and
    // what `replay` does without `--data-type` (detected per record).
    bench_encode_one(c, "graph-alert", GRAPH_ALERTS, Mapping::GraphAlerts);
    bench_encode_one(c, "graph-alert-detected", GRAPH_ALERTS, Mapping::Auto);
    bench_encode_one(
        c,
        "cloud-app-event",
        CLOUD_APP_EVENTS,
        Mapping::CloudAppEvents,
    );
    bench_encode_one(
        c,
        "cloud-app-event-detected",
        CLOUD_APP_EVENTS,
        Mapping::Auto,
    );
}

/// Parses and encodes a page, reusing the parser, input and output buffers.
fn parse_encode_reusing(
    encoder: &mut Encoder,
    parser: &mut Parser,
    page: &[u8],
    input: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    input.clear();
    input.extend_from_slice(page);
    out.clear();
    parser
        .parse_document(input, |record| {
            if let Ok(record) = record {
                encoder.encode(record, out);
                out.push(b'\n');
            }
        })
        .expect("bench input parses");
}

fn bench_parse_encode(c: &mut Criterion) {
    let page = realistic_page();
    let mut encoder = encoder();
    let mut parser = Parser::new();
    let mut input = Vec::new();
    let mut out = Vec::new();
    for (unit, throughput) in [
        ("records", Throughput::Elements(PAGE_RECORDS as u64)),
        ("bytes", Throughput::Bytes(page.len() as u64)),
    ] {
        let mut group = c.benchmark_group(format!("parse_encode_page/{unit}"));
        group.throughput(throughput);
        group.bench_function("reused_buffers", |b| {
            b.iter(|| {
                parse_encode_reusing(
                    &mut encoder,
                    &mut parser,
                    black_box(&page),
                    &mut input,
                    &mut out,
                )
            })
        });
        group.bench_function("fresh_buffers", |b| {
            b.iter_batched(
                || (Parser::new(), Vec::new(), Vec::new()),
                |(mut parser, mut input, mut out)| {
                    parse_encode_reusing(
                        &mut encoder,
                        &mut parser,
                        black_box(&page),
                        &mut input,
                        &mut out,
                    );
                    (parser, input, out)
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

/// The page path `run` takes, with the real stage functions: the page is
/// split (not parsed whole), its paging facts read, and each record parsed
/// where it lies and encoded into a batch for a writer thread that hands
/// every batch straight back (so the socket is not measured). One
/// 100-record page of activities, a whole scan window.
fn bench_real_page_path(c: &mut Criterion) {
    let mut page = realistic_page();
    // One page that ends its scan window: no next filter needed.
    let tail = br#""hasNext":true"#;
    if let Some(at) = page.windows(tail.len()).position(|w| w == tail) {
        page.splice(at..at + tail.len(), br#""hasNext":false"#.iter().copied());
    }
    let sink = spawn_writer("bench-writer", |batches, mut returned, health| {
        for batch in batches {
            health.counters.queued.fetch_sub(1, Ordering::Relaxed);
            returned.send(batch);
        }
        Ok(())
    })
    .expect("writer thread");
    let status = Arc::new(TenantStatus::new("bench", &[DataType::Activities]));
    let mut stage = EncodeStage::new(encoder(), sink, status);
    let cursor = Cursor::start(DataType::Activities, 1_700_000_000_000, 3_600_000);
    let mut parser = Parser::new();
    let mut bytes = Vec::new();
    let mut split = SplitPage::default();
    let (verdicts, verdicts_out) = crossbeam_channel::bounded(1);
    let mut group = c.benchmark_group("parse_encode_page/records");
    group.throughput(Throughput::Elements(PAGE_RECORDS as u64));
    group.bench_function("real_path", |b| {
        b.iter(|| {
            bytes.clear();
            bytes.extend_from_slice(black_box(&page));
            let facts = read_page(&mut parser, &mut split, &bytes, &cursor).expect("a page");
            let mut page = Page {
                buffers: PageBuffers {
                    bytes: std::mem::take(&mut bytes),
                    split: std::mem::take(&mut split),
                },
                origin: PageOrigin::Cas(cursor.clone()),
                facts,
            };
            stage.encode_page(&mut page, &verdicts).expect("encoded");
            bytes = page.buffers.bytes;
            split = page.buffers.split;
            let _ = verdicts_out.try_recv();
            stage
                .collect(|_, _| Ok::<(), ()>(()))
                .expect("nothing fails");
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_escape, bench_encode, bench_parse_encode, bench_real_page_path
}
criterion_main!(benches);
