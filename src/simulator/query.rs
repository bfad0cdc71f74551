//! The list endpoints' semantics: filters, sorting, `skip`/`limit`, and scan
//! mode, evaluated over a generated stream without materialising it.
//!
//! Records are indexed by event time, and a record's ingestion time is at
//! most `max_index_delay_ms` later. So any order by `created` can be produced
//! by walking indices in event order and holding back, in a heap, only the
//! records whose place is not yet certain.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use simd_json::prelude::*;
use simd_json::OwnedValue;

use super::data::StreamConfig;
use crate::data_type::{DataType, Family};

/// Records per page without scan mode (with an API token).
pub const MAX_PAGE: u64 = 100;
/// `skip + limit` may not exceed this.
pub const MAX_SKIP_PLUS_LIMIT: u64 = 5000;
/// Scan mode's page size bounds.
pub const SCAN_LIMITS: std::ops::RangeInclusive<u64> = 500..=5000;

/// A request the simulator refuses, answered with HTTP 400.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    /// The body is not a JSON object.
    #[error("the request body must be a JSON object")]
    NotAnObject,
    /// A field has the wrong type or an unknown value.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// `skip + limit` is over the API's limit.
    #[error("skip + limit must not exceed 5000")]
    SkipTooLarge,
    /// Scan mode needs a limit of 500 to 5000.
    #[error("scan mode needs a limit from 500 to 5000")]
    ScanLimit,
    /// Scan mode lists activities only.
    #[error("scan mode is only supported for activities")]
    ScanAlerts,
}

/// Bounds on one time field, all inclusive, epoch ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Lowest allowed value.
    pub low: i64,
    /// Highest allowed value.
    pub high: i64,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            low: i64::MIN,
            high: i64::MAX,
        }
    }
}

impl Bounds {
    fn contains(&self, ms: i64) -> bool {
        (self.low..=self.high).contains(&ms)
    }

    /// Narrows the bounds by one filter object such as `{"gte": 5}`.
    fn apply(&mut self, filter: &OwnedValue, name: &'static str) -> Result<(), QueryError> {
        let object = filter.as_object().ok_or(QueryError::Invalid(name))?;
        for (op, value) in object.iter() {
            let number = || value.as_i64().ok_or(QueryError::Invalid(name));
            match op.as_str() {
                "gte" => self.low = self.low.max(number()?),
                "gt" => self.low = self.low.max(number()?.saturating_add(1)),
                "lte" => self.high = self.high.min(number()?),
                "lt" => self.high = self.high.min(number()?.saturating_sub(1)),
                "range" => {
                    // A list of {start, end}: taken as their hull, which is
                    // what every client in practice sends (one range).
                    let ranges = value.as_array().ok_or(QueryError::Invalid(name))?;
                    let (mut low, mut high) = (i64::MAX, i64::MIN);
                    for range in ranges {
                        low = low.min(range.get_i64("start").ok_or(QueryError::Invalid(name))?);
                        high = high.max(range.get_i64("end").ok_or(QueryError::Invalid(name))?);
                    }
                    self.low = self.low.max(low);
                    self.high = self.high.min(high);
                }
                _ => return Err(QueryError::Invalid(name)),
            }
        }
        Ok(())
    }
}

/// Which field orders the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortField {
    /// Event time.
    Date,
    /// Ingestion time.
    Created,
}

/// A parsed list request.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// Bounds on event time.
    pub date: Bounds,
    /// Bounds on ingestion time.
    pub created: Bounds,
    /// App ids from `service: {eq: [...]}`, when given.
    pub services: Option<Vec<u64>>,
    /// Records to skip.
    pub skip: u64,
    /// Records per page after capping.
    pub limit: u64,
    /// Order field.
    pub sort: SortField,
    /// Ascending when true.
    pub ascending: bool,
    /// Scan mode.
    pub scan: bool,
    /// The filters as sent, for `nextQueryFilters`.
    pub filters: OwnedValue,
}

impl Query {
    /// Parses a request body for a stream of `kind`.
    pub fn parse(body: &OwnedValue, kind: DataType) -> Result<Self, QueryError> {
        if !body.is_object() {
            return Err(QueryError::NotAnObject);
        }
        let mut query = Query {
            date: Bounds::default(),
            created: Bounds::default(),
            services: None,
            skip: 0,
            limit: MAX_PAGE,
            sort: SortField::Date,
            ascending: false,
            scan: body.get_bool("isScan").unwrap_or(false),
            filters: body
                .get("filters")
                .cloned()
                .unwrap_or_else(OwnedValue::object),
        };
        if let Some(filters) = body.get("filters") {
            let filters = filters.as_object().ok_or(QueryError::Invalid("filters"))?;
            for (field, filter) in filters.iter() {
                match field.as_str() {
                    "date" => query.date.apply(filter, "date filter")?,
                    "created" => query.created.apply(filter, "created filter")?,
                    "service" | "entity.service" => {
                        let ids = filter
                            .get("eq")
                            .and_then(|v| v.as_array())
                            .ok_or(QueryError::Invalid("service filter"))?;
                        let ids = ids
                            .iter()
                            .map(|id| id.as_u64().ok_or(QueryError::Invalid("service filter")))
                            .collect::<Result<Vec<_>, _>>()?;
                        query.services = Some(ids);
                    }
                    // Other fields exist in the real API; the simulator
                    // accepts and ignores them rather than failing a test
                    // that passes a user's filter through.
                    _ => {}
                }
            }
        }
        if let Some(skip) = body.get("skip") {
            query.skip = skip.as_u64().ok_or(QueryError::Invalid("skip"))?;
        }
        if let Some(limit) = body.get("limit") {
            query.limit = limit.as_u64().ok_or(QueryError::Invalid("limit"))?;
        }
        match body.get_str("sortField") {
            None | Some("date") => query.sort = SortField::Date,
            Some("created") if kind == DataType::Activities => query.sort = SortField::Created,
            Some("severity") if kind == DataType::Alerts => query.sort = SortField::Date,
            Some(_) => return Err(QueryError::Invalid("sortField")),
        }
        match body.get_str("sortDirection") {
            None | Some("desc") => query.ascending = false,
            Some("asc") => query.ascending = true,
            Some(_) => return Err(QueryError::Invalid("sortDirection")),
        }
        if query.scan {
            if kind != DataType::Activities {
                return Err(QueryError::ScanAlerts);
            }
            if !SCAN_LIMITS.contains(&query.limit) {
                return Err(QueryError::ScanLimit);
            }
            // Scan mode walks from newest to oldest by event time.
            query.sort = SortField::Date;
            query.ascending = false;
            query.skip = 0;
        } else {
            if query.skip.saturating_add(query.limit) > MAX_SKIP_PLUS_LIMIT {
                return Err(QueryError::SkipTooLarge);
            }
            query.limit = query.limit.min(MAX_PAGE);
        }
        Ok(query)
    }
}

/// One page of results: record indices in order, and paging facts.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// Indices of the records on the page, in order.
    pub records: Vec<u64>,
    /// Whether more records match.
    pub has_next: bool,
    /// Matching records, approximately (as the real API says).
    pub total: u64,
    /// Scan mode: the filters for the next page.
    pub next_filters: Option<OwnedValue>,
}

/// Runs `query` over `stream` as seen at `now_ms` (records not yet ingested
/// are invisible).
pub fn run(stream: &StreamConfig, query: &Query, now_ms: i64) -> Page {
    let ingestion_spread = stream.max_index_delay_ms.max(0);
    let key_spread = match query.sort {
        SortField::Date => 0,
        SortField::Created => ingestion_spread,
    };
    let created_of = |i: u64| match stream.kind.family() {
        Family::Activity => stream.created(i),
        Family::Alert => stream.timestamp(i),
    };
    let matches = |i: u64| {
        query.date.contains(stream.timestamp(i))
            && query.created.contains(created_of(i))
            && created_of(i) <= now_ms
            && query
                .services
                .as_ref()
                .is_none_or(|ids| ids.contains(&stream.app_id(i)))
    };
    let key = |i: u64| match query.sort {
        SortField::Date => stream.timestamp(i),
        SortField::Created => created_of(i),
    };
    // Event-time window that can hold a match.
    let low_ts = query
        .date
        .low
        .max(query.created.low.saturating_sub(ingestion_spread));
    let high_ts = query.date.high.min(query.created.high).min(now_ms);
    let first = stream.first_index_at_or_after(low_ts);
    let end = if high_ts == i64::MAX {
        u64::MAX
    } else {
        stream.first_index_at_or_after(high_ts.saturating_add(1))
    };
    let total = end.saturating_sub(first);
    let wanted = query.skip + query.limit + 1;
    let mut found: Vec<u64> = Vec::with_capacity(wanted as usize);
    if first < end {
        if query.ascending {
            let mut held = BinaryHeap::new();
            let mut i = first;
            while i < end && (found.len() as u64) < wanted {
                let ts = stream.timestamp(i);
                while let Some(Reverse((k, j))) = held.peek().copied() {
                    if k > ts || (found.len() as u64) >= wanted {
                        break;
                    }
                    held.pop();
                    found.push(j);
                }
                if matches(i) {
                    held.push(Reverse((key(i), i)));
                }
                i += 1;
            }
            while (found.len() as u64) < wanted {
                match held.pop() {
                    Some(Reverse((_, j))) => found.push(j),
                    None => break,
                }
            }
        } else {
            let mut held = BinaryHeap::new();
            let mut i = end;
            while i > first && (found.len() as u64) < wanted {
                i -= 1;
                let ts = stream.timestamp(i);
                while let Some((k, j)) = held.peek().copied() {
                    if k < ts.saturating_add(key_spread) || (found.len() as u64) >= wanted {
                        break;
                    }
                    held.pop();
                    found.push(j);
                }
                if matches(i) {
                    held.push((key(i), i));
                }
            }
            while (found.len() as u64) < wanted {
                match held.pop() {
                    Some((_, j)) => found.push(j),
                    None => break,
                }
            }
        }
    }
    let mut records: Vec<u64> = found.into_iter().skip(query.skip as usize).collect();
    let has_next = records.len() as u64 > query.limit;
    records.truncate(query.limit as usize);
    let mut next_filters = None;
    if query.scan && has_next {
        if let Some(&last) = records.last() {
            let last_ts = stream.timestamp(last);
            let kept: Vec<u64> = records
                .iter()
                .copied()
                .filter(|&i| stream.timestamp(i) != last_ts)
                .collect();
            // A page of one millisecond only cannot move on without loss;
            // the simulator's bursts are kept below the smallest scan page.
            if !kept.is_empty() {
                records = kept;
            }
            let mut filters = query.filters.clone();
            let mut date = filters
                .get("date")
                .and_then(|d| d.as_object().cloned())
                .unwrap_or_default();
            date.remove("lt");
            date.remove("range");
            date.insert("lte".into(), OwnedValue::from(last_ts));
            if let Some(object) = filters.as_object_mut() {
                object.insert("date".into(), OwnedValue::from(date));
            }
            next_filters = Some(filters);
        }
    }
    Page {
        records,
        has_next,
        total,
        next_filters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(kind: DataType) -> StreamConfig {
        StreamConfig {
            kind,
            seed: 3,
            start_ms: 1_000_000,
            per_minute: 6_000,
            max_index_delay_ms: 5_000,
            burst_every: 200,
            burst_size: 30,
            hostile_every: 0,
        }
    }

    fn query(json: &str, kind: DataType) -> Result<Query, QueryError> {
        let mut bytes = json.as_bytes().to_vec();
        let body = simd_json::to_owned_value(&mut bytes).expect("test JSON");
        Query::parse(&body, kind)
    }

    /// The reference answer: every visible index, filtered and sorted.
    fn brute_force(s: &StreamConfig, q: &Query, now: i64, upto: u64) -> Vec<u64> {
        let created = |i| match s.kind.family() {
            Family::Activity => s.created(i),
            Family::Alert => s.timestamp(i),
        };
        let mut all: Vec<u64> = (0..upto)
            .filter(|&i| {
                q.date.contains(s.timestamp(i))
                    && q.created.contains(created(i))
                    && created(i) <= now
            })
            .collect();
        let key = |i: u64| match q.sort {
            SortField::Date => s.timestamp(i),
            SortField::Created => created(i),
        };
        all.sort_by_key(|&i| (key(i), i));
        if !q.ascending {
            all.reverse();
        }
        all
    }

    #[test]
    fn pages_match_brute_force() {
        let s = stream(DataType::Activities);
        let now = s.timestamp(3_000);
        let bodies = [
            r#"{"filters":{"created":{"gte":1010000}},"sortField":"created","sortDirection":"asc","limit":100}"#,
            r#"{"filters":{"created":{"gt":1010000,"lt":1100000}},"sortField":"created","sortDirection":"asc","skip":250,"limit":100}"#,
            r#"{"filters":{"date":{"range":[{"start":1020000,"end":1090000}]}},"sortField":"date","sortDirection":"asc"}"#,
            r#"{"filters":{},"sortField":"created","sortDirection":"desc","limit":100}"#,
            r#"{"filters":{"date":{"lte":1200000}},"sortField":"date","sortDirection":"desc","skip":4900,"limit":100}"#,
        ];
        for body in bodies {
            let q = query(body, DataType::Activities).expect("valid");
            let page = run(&s, &q, now);
            let expected = brute_force(&s, &q, now, 4_000);
            let wanted: Vec<u64> = expected
                .iter()
                .copied()
                .skip(q.skip as usize)
                .take(q.limit as usize)
                .collect();
            let keys = |v: &[u64]| -> Vec<i64> {
                v.iter()
                    .map(|&i| match q.sort {
                        SortField::Date => s.timestamp(i),
                        SortField::Created => s.created(i),
                    })
                    .collect()
            };
            // Same records in the same key order (ties may be ordered
            // either way by the real API; ours is by index).
            assert_eq!(keys(&page.records), keys(&wanted), "{body}");
            assert_eq!(page.records, wanted, "{body}");
            assert_eq!(
                page.has_next,
                expected.len() > q.skip as usize + q.limit as usize,
                "{body}"
            );
        }
    }

    #[test]
    fn limits_and_validation() {
        let q = query(r#"{"limit":1000}"#, DataType::Activities).expect("capped");
        assert_eq!(q.limit, MAX_PAGE);
        assert_eq!(
            query(r#"{"skip":4950,"limit":100}"#, DataType::Activities),
            Err(QueryError::SkipTooLarge)
        );
        assert_eq!(
            query(r#"{"isScan":true,"limit":100}"#, DataType::Activities),
            Err(QueryError::ScanLimit)
        );
        assert_eq!(
            query(r#"{"isScan":true,"limit":500}"#, DataType::Alerts),
            Err(QueryError::ScanAlerts)
        );
        assert!(query(r#"{"filters":{"date":{"like":1}}}"#, DataType::Alerts).is_err());
        assert!(query(r#"[1]"#, DataType::Alerts).is_err());
        assert!(query(r#"{"sortField":"created"}"#, DataType::Alerts).is_err());
    }

    #[test]
    fn service_filter() {
        let s = stream(DataType::Activities);
        let q = query(
            r#"{"filters":{"service":{"eq":[11114,10489]}}}"#,
            DataType::Activities,
        )
        .expect("valid");
        let page = run(&s, &q, s.timestamp(5_000));
        assert_eq!(page.records.len(), 100);
        assert!(page
            .records
            .iter()
            .all(|&i| [11114, 10489].contains(&s.app_id(i))));
    }

    #[test]
    fn scan_mode_lists_every_record_once() {
        let s = stream(DataType::Activities);
        let now = s.timestamp(20_000) + 10_000;
        let low = s.timestamp(2_000);
        let mut body =
            format!(r#"{{"filters":{{"date":{{"gte":{low}}}}},"isScan":true,"limit":500}}"#);
        let mut seen = Vec::new();
        for _ in 0..100 {
            let q = query(&body, DataType::Activities).expect("valid");
            let page = run(&s, &q, now);
            seen.extend(page.records.iter().copied());
            match page.next_filters {
                Some(filters) if page.has_next => {
                    let mut next = OwnedValue::object();
                    next.try_insert("filters", filters);
                    next.try_insert("isScan", true);
                    next.try_insert("limit", 500);
                    body = next.encode();
                }
                _ => break,
            }
        }
        let mut expected: Vec<u64> = (0..30_000)
            .filter(|&i| s.timestamp(i) >= low && s.created(i) <= now)
            .collect();
        expected.sort_unstable();
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        assert_eq!(sorted.len(), seen.len());
        sorted.dedup();
        assert_eq!(sorted.len(), seen.len(), "a record was listed twice");
        assert_eq!(sorted, expected);
    }
}
