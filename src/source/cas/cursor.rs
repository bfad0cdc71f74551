//! Where each data type's paging stands, and how one page moves it.
//!
//! Activities are read with the API's scan mode (up to 5,000 records a
//! request instead of 100) over windows of ingestion time (`created`): the
//! first start scans event times in the backfill window indexed up to that
//! moment; every later poll scans `[position, now]` and moves `position`
//! past it. Windows never overlap, and a record indexed minutes late still
//! falls into a later window, so none is missed or repeated. Inside a
//! window the server pages from newest to oldest event time and drops a
//! page's last millisecond when more follow, so pages never overlap either.
//! A tail of 100-record pages would top out at 2,500 records a minute under
//! the default request budget; scan windows keep up with tenants many times
//! larger.
//!
//! Alerts are few and are followed by `date`, ascending, 100 a page. Many
//! records can share one millisecond, and a page can end inside such a run,
//! so the cursor keeps the ids already delivered at its position (the
//! boundary millisecond) and drops them from the next page, which asks for
//! `>= position`; when a whole page sits at one millisecond it also skips
//! past what it has seen, so paging always moves.

use simd_json::prelude::*;
use simd_json::tape::Value;
use simd_json::OwnedValue;

use crate::data_type::{DataType, Family};

/// Records per tail request (the API's maximum with a token).
pub const TAIL_PAGE: u64 = 100;
/// Records per scan-mode request.
pub const SCAN_PAGE: u64 = 5000;
/// Records asked for in the first request of a tail window: most windows
/// are small, and a small page keeps memory low; a window with more goes on
/// with full pages.
pub const FIRST_WINDOW_PAGE: u64 = 1000;
/// The API refuses `skip + limit` above this.
pub const MAX_SKIP_PLUS_LIMIT: u64 = 5000;

/// A scan-mode pass over one window of ingestion time (activities).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Oldest event time to fetch: the backfill window, on a first start.
    pub date_low: Option<i64>,
    /// Newest event time still to fetch (from `nextQueryFilters`); `None`
    /// before the first page.
    pub date_upper: Option<i64>,
    /// Oldest ingestion time of the window; `None` for the first backfill.
    pub created_from: Option<i64>,
    /// Newest ingestion time of the window.
    pub created_to: i64,
}

/// One data type's position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Which stream.
    pub kind: DataType,
    /// Activities: the next window starts at this ingestion time. Alerts:
    /// the next page asks for `date >= position`.
    pub position: i64,
    /// Alerts: ids already delivered whose date equals `position`.
    pub boundary_ids: Vec<String>,
    /// Alerts: records at `position` to skip, when whole pages sat there.
    pub skip: u64,
    /// Activities: the scan window in progress.
    pub scan: Option<Scan>,
    /// Alerts delivered whose date lay ahead of the clock (date, id): the
    /// position does not follow them (it would skip every alert until
    /// then), so each request lists them again until the position passes
    /// their date, and they are known by this list.
    pub ahead: Vec<(i64, String)>,
}

/// How far ahead of the agent's clock a record's time may be (clock skew)
/// before the cursor stops following it.
pub const MAX_AHEAD_MS: i64 = 5 * 60_000;

/// Why a page cannot move the cursor.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CursorError {
    /// The page is not an API page.
    #[error("not an API page: {0}")]
    NotAPage(&'static str),
    /// A scan page said more follow but gave no next filter.
    #[error("scan page has hasNext but no nextQueryFilters.date.lte")]
    NoNextFilter,
    /// More alerts share one millisecond than paging can step over.
    #[error("more than {MAX_SKIP_PLUS_LIMIT} records share one millisecond at {0}")]
    TooManyAtOneMillisecond(i64),
    /// The API says more records follow, but its page does not move the
    /// cursor: asking again would get the same page forever.
    #[error(
        "the API answered hasNext with a page that does not move the cursor ({0}); \
         asking again would repeat it forever"
    )]
    NoProgress(&'static str),
}

/// A range of time the agent will not fetch, because it lies before the
/// backfill window; reported in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkippedRange {
    /// Start (inclusive), epoch ms.
    pub from: i64,
    /// End (exclusive), epoch ms.
    pub to: i64,
}

impl Cursor {
    /// The cursor of a first start at `now_ms` with a backfill window.
    pub fn start(kind: DataType, now_ms: i64, backfill_ms: i64) -> Self {
        let low = now_ms - backfill_ms;
        match kind.family() {
            Family::Activity => Self {
                kind,
                position: now_ms + 1,
                boundary_ids: Vec::new(),
                skip: 0,
                scan: Some(Scan {
                    date_low: Some(low),
                    date_upper: None,
                    created_from: None,
                    created_to: now_ms,
                }),
                ahead: Vec::new(),
            },
            Family::Alert => Self {
                kind,
                position: low,
                boundary_ids: Vec::new(),
                skip: 0,
                scan: None,
                ahead: Vec::new(),
            },
        }
    }

    /// A saved cursor, or a fresh backfill when it is older than the window
    /// (the gap is returned so it can be logged, never silently lost).
    pub fn resume(
        mut saved: Cursor,
        now_ms: i64,
        backfill_ms: i64,
    ) -> (Self, Option<SkippedRange>) {
        if saved.position > now_ms.saturating_add(MAX_AHEAD_MS) {
            // A position the clock has not reached (a checkpoint from a
            // clock gone wrong, or edited): following it would skip every
            // record until then.
            tracing::warn!(
                "{}: the checkpoint's position {} is ahead of the clock; starting from now",
                saved.kind.name(),
                crate::clock::iso_string(saved.position)
            );
            saved.position = now_ms;
            saved.boundary_ids.clear();
            saved.skip = 0;
            if let Some(scan) = &mut saved.scan {
                scan.created_to = scan.created_to.min(now_ms);
            }
        }
        let oldest = now_ms - backfill_ms;
        let from = match &saved.scan {
            Some(Scan {
                date_low: Some(low),
                date_upper,
                created_to,
                ..
            }) => (date_upper.unwrap_or(*created_to) < oldest).then_some(*low),
            Some(Scan {
                created_from: Some(from),
                ..
            }) => (*from < oldest).then_some(*from),
            Some(_) => None,
            None => (saved.position < oldest).then_some(saved.position),
        };
        match from {
            Some(from) => {
                let skipped = SkippedRange { from, to: oldest };
                (Self::start(saved.kind, now_ms, backfill_ms), Some(skipped))
            }
            None => (saved, None),
        }
    }

    /// Whether the first-start backfill is still running.
    pub fn backfilling(&self) -> bool {
        self.scan.as_ref().is_some_and(|s| s.date_low.is_some())
    }

    /// Epoch ms up to which every record is delivered once this cursor is
    /// saved: the start of the open window (ingestion time) for
    /// activities, the date position for alerts. During the first backfill
    /// (which walks from newest to oldest) it is the window's oldest bound.
    pub fn delivered_until(&self) -> i64 {
        match &self.scan {
            Some(Scan {
                date_low: Some(low),
                ..
            }) => *low,
            Some(Scan {
                created_from: Some(from),
                ..
            }) => *from,
            _ => self.position,
        }
    }

    /// Whether a scan window is in progress.
    pub fn scanning(&self) -> bool {
        self.scan.is_some()
    }

    /// Activities between windows: opens the window `[position, now_ms]`.
    /// Does nothing for alerts or while a window is open.
    pub fn begin_window(&mut self, now_ms: i64) {
        if self.kind == DataType::Activities && self.scan.is_none() {
            self.scan = Some(Scan {
                date_low: None,
                date_upper: None,
                created_from: Some(self.position),
                created_to: now_ms.max(self.position),
            });
        }
    }

    /// The JSON body of the next request; `user_filters` (an API filter
    /// object) are combined with the cursor's own, which win on conflict.
    pub fn request_body(&self, user_filters: Option<&OwnedValue>) -> String {
        let mut body = Vec::new();
        self.write_request_body(user_filters, &mut body);
        String::from_utf8_lossy(&body).into_owned()
    }

    /// Writes [`Self::request_body`] into `out` (cleared first), without
    /// building a JSON tree: the fetch thread reuses one buffer for every
    /// request.
    pub fn write_request_body(&self, user_filters: Option<&OwnedValue>, out: &mut Vec<u8>) {
        // The cursor's bounds: (field, operator, value).
        let mut bounds: [(&str, &str, i64); 4] = [("", "", 0); 4];
        let mut count = 0;
        let mut bound = |field: &'static str, op: &'static str, value: i64| {
            bounds[count] = (field, op, value);
            count += 1;
        };
        match (&self.scan, self.kind) {
            (Some(scan), _) => {
                if let Some(low) = scan.date_low {
                    bound("date", "gte", low);
                }
                if let Some(upper) = scan.date_upper {
                    bound("date", "lte", upper);
                }
                if let Some(from) = scan.created_from {
                    bound("created", "gte", from);
                }
                bound("created", "lte", scan.created_to);
            }
            (None, kind) => bound(tail_field(kind), "gte", self.position),
        }
        let bounds = &bounds[..count];
        let bounded = |field: &str| bounds.iter().any(|(f, _, _)| *f == field);
        let write_bounds = |out: &mut Vec<u8>, field: &str, first: bool| {
            let mut first = first;
            for (_, op, value) in bounds.iter().filter(|(f, _, _)| *f == field) {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                crate::json::write_string(out, op);
                out.push(b':');
                crate::json::write_int(out, *value);
            }
        };
        out.clear();
        out.extend_from_slice(b"{\"filters\":{");
        let mut first = true;
        let user = user_filters.and_then(|f| f.as_object());
        for (field, value) in user.into_iter().flatten() {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            crate::json::write_string(out, field);
            out.push(b':');
            if !bounded(field) {
                let _ = value.write(out);
                continue;
            }
            // The user's operators on a field the cursor bounds stay,
            // except those the cursor sets.
            out.push(b'{');
            let mut first_op = true;
            for (op, operand) in value.as_object().into_iter().flatten() {
                if bounds.iter().any(|(f, o, _)| f == field && o == op) {
                    continue;
                }
                if !std::mem::take(&mut first_op) {
                    out.push(b',');
                }
                crate::json::write_string(out, op);
                out.push(b':');
                let _ = operand.write(out);
            }
            write_bounds(out, field, first_op);
            out.push(b'}');
        }
        for field in ["date", "created"] {
            if bounded(field) && !user.is_some_and(|u| u.contains_key(field)) {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                crate::json::write_string(out, field);
                out.extend_from_slice(b":{");
                write_bounds(out, field, true);
                out.push(b'}');
            }
        }
        out.push(b'}');
        match &self.scan {
            Some(scan) => {
                let first_of_window = scan.date_low.is_none() && scan.date_upper.is_none();
                let limit = if first_of_window {
                    FIRST_WINDOW_PAGE
                } else {
                    SCAN_PAGE
                };
                out.extend_from_slice(b",\"isScan\":true,\"limit\":");
                crate::json::write_int(out, limit);
            }
            None => {
                out.extend_from_slice(b",\"sortField\":");
                crate::json::write_string(out, tail_field(self.kind));
                out.extend_from_slice(b",\"sortDirection\":\"asc\",\"skip\":");
                crate::json::write_int(out, self.skip);
                out.extend_from_slice(b",\"limit\":");
                crate::json::write_int(out, TAIL_PAGE);
            }
        }
        out.push(b'}');
    }

    /// `hasNext`, and for a scan page that has a next one, the upper date
    /// bound of the next request (`nextQueryFilters.date.lte`).
    pub fn page_facts(&self, page: Value<'_, '_>) -> Result<(bool, Option<i64>), CursorError> {
        let has_next = page
            .get("hasNext")
            .and_then(|v| v.as_bool())
            .ok_or(CursorError::NotAPage("no hasNext"))?;
        let next_upper = if self.scan.is_some() && has_next {
            page.get("nextQueryFilters")
                .and_then(|f| f.get("date"))
                .and_then(|d| d.get("lte"))
                .and_then(|v| v.as_i64())
        } else {
            None
        };
        Ok((has_next, next_upper))
    }

    /// Writes into `out` a stand-in for the `_id` of a record that has
    /// none: `#` and a hash of its whole content, so that the same record
    /// seen again at the cursor's millisecond is known as a repeat (an
    /// empty id never is). FNV-1a, not the standard library's hasher,
    /// because the value is kept in checkpoints across upgrades.
    pub fn fingerprint(record: &simd_json::tape::Object<'_, '_>, out: &mut String) {
        let mut hash = Fnv1a::default();
        for (key, value) in record.iter() {
            hash.write(key.as_bytes());
            hash.value(value);
        }
        out.clear();
        out.push('#');
        for shift in (0..16).rev() {
            let nibble = ((hash.0 >> (shift * 4)) & 0xf) as u32;
            out.push(char::from_digit(nibble, 16).unwrap_or('0'));
        }
    }

    /// A record's `_id` (empty when missing) and order key.
    pub fn record_facts<'page>(
        &self,
        record: &simd_json::tape::Object<'_, 'page>,
    ) -> (&'page str, Option<i64>) {
        let id = record.get("_id").and_then(|v| v.into_string());
        let key = record
            .get(self.key_field())
            .and_then(|k| k.as_i64().or_else(|| k.as_f64().map(|f| f as i64)));
        (id.unwrap_or_default(), key)
    }

    /// The record field a page is ordered by: `created` for activities
    /// between scan windows, `timestamp` otherwise.
    pub fn key_field(&self) -> &'static str {
        match (self.kind, self.scan.is_some()) {
            (DataType::Activities, false) => "created",
            _ => "timestamp",
        }
    }

    /// Starts moving over a page record by record (see [`PageAdvance`]);
    /// `scratch` keeps id buffers between pages.
    pub fn begin_page<'c>(&'c self, scratch: &'c mut Vec<String>) -> PageAdvance<'c> {
        PageAdvance {
            cursor: self,
            records: 0,
            newest: self.position,
            at_newest: scratch,
            at_newest_len: 0,
            all_at_position: true,
            ahead_of: crate::clock::now_ms().saturating_add(MAX_AHEAD_MS),
            new_ahead: Vec::new(),
        }
    }
}

/// A cursor moving over one page, a record at a time, so a page never has
/// to be held parsed whole: each record is asked about once, in page
/// order, then [`finish`](Self::finish) gives the cursor after the page.
pub struct PageAdvance<'c> {
    cursor: &'c Cursor,
    records: u64,
    /// Newest order key among delivered records (starts at the position).
    newest: i64,
    /// Ids of the records whose key equals `newest`: the first
    /// `at_newest_len` entries; the rest are spare buffers.
    at_newest: &'c mut Vec<String>,
    at_newest_len: usize,
    /// Every record so far sat at the position's millisecond.
    all_at_position: bool,
    /// Records with times after this are ahead of the clock.
    ahead_of: i64,
    /// Records of this page ahead of the clock (rare: no allocation
    /// otherwise).
    new_ahead: Vec<(i64, String)>,
}

impl PageAdvance<'_> {
    /// Whether the record with `id` and order `key` is new (to deliver).
    pub fn record(&mut self, id: &str, key: Option<i64>) -> bool {
        self.records += 1;
        if self.cursor.scan.is_some() {
            return true;
        }
        let position = self.cursor.position;
        let key = key.unwrap_or(position);
        if key < position {
            // Asked for from the position on: a record before it was
            // delivered already (or is the API's mistake); it must not
            // come out again on every poll.
            return false;
        }
        let listed = |ahead: &[(i64, String)]| ahead.iter().any(|(k, i)| *k == key && i == id);
        if listed(&self.cursor.ahead) || listed(&self.new_ahead) {
            return false;
        }
        if key > self.ahead_of {
            tracing::warn!(
                "{}: a record dated {} is ahead of the clock: delivered once; the cursor \
                 does not move past the clock for it",
                self.cursor.kind.name(),
                crate::clock::iso_string(key)
            );
            self.new_ahead.push((key, id.to_owned()));
            return true;
        }
        self.all_at_position &= key == position;
        let repeat = key == position
            && !id.is_empty()
            && self.cursor.boundary_ids.iter().any(|seen| seen == id);
        if !repeat && key > self.newest {
            self.newest = key;
            self.at_newest_len = 0;
        }
        if key == self.newest {
            match self.at_newest.get_mut(self.at_newest_len) {
                Some(buffer) => {
                    buffer.clear();
                    buffer.push_str(id);
                }
                None => self.at_newest.push(id.to_owned()),
            }
            self.at_newest_len += 1;
        }
        !repeat
    }

    /// The cursor once every delivered record of the page is delivered.
    pub fn finish(self, has_next: bool, next_upper: Option<i64>) -> Result<Cursor, CursorError> {
        let cursor = self.cursor;
        let mut next = cursor.clone();
        if let Some(scan) = &cursor.scan {
            if has_next {
                let upper = next_upper.ok_or(CursorError::NoNextFilter)?;
                // A backfill walks from newest to oldest: each page's next
                // upper bound must be older than the last one.
                if scan.date_upper.is_some_and(|previous| upper >= previous) {
                    return Err(CursorError::NoProgress(
                        "nextQueryFilters.date.lte did not move back",
                    ));
                }
                next.scan = Some(Scan {
                    date_upper: Some(upper),
                    ..scan.clone()
                });
            } else {
                next.scan = None;
                next.position = scan.created_to.saturating_add(1);
            }
            return Ok(next);
        }
        let at_newest = &self.at_newest[..self.at_newest_len];
        next.position = self.newest;
        next.ahead.extend(self.new_ahead);
        // Once the position passes them, the API no longer lists them.
        next.ahead.retain(|(key, _)| *key >= next.position);
        if self.newest == cursor.position {
            for id in at_newest {
                if !next.boundary_ids.contains(id) {
                    next.boundary_ids.push(id.clone());
                }
            }
        } else {
            next.boundary_ids = at_newest.to_vec();
        }
        // A full page that never left the boundary millisecond: step over it.
        let full = self.records >= TAIL_PAGE;
        next.skip = if full && self.all_at_position {
            let skip = cursor.skip + self.records;
            if skip + TAIL_PAGE > MAX_SKIP_PLUS_LIMIT {
                return Err(CursorError::TooManyAtOneMillisecond(cursor.position));
            }
            skip
        } else {
            0
        };
        if has_next && next == *cursor {
            return Err(CursorError::NoProgress("same position, same skip"));
        }
        Ok(next)
    }
}

/// The 64-bit FNV-1a hash, over a record's keys and values.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }

    fn value(&mut self, value: simd_json::tape::Value<'_, '_>) {
        if let Some(object) = value.as_object() {
            self.write(b"{");
            for (key, member) in object.iter() {
                self.write(key.as_bytes());
                self.value(member);
            }
        } else if let Some(array) = value.as_array() {
            self.write(b"[");
            for item in array.iter() {
                self.value(item);
            }
        } else if let Some(text) = value.as_str() {
            self.write(text.as_bytes());
        } else {
            // Numbers, booleans and null by their type and bits.
            let bits = value
                .as_i64()
                .map(|n| n as u64)
                .or_else(|| value.as_u64())
                .or_else(|| value.as_f64().map(f64::to_bits))
                .or_else(|| value.as_bool().map(u64::from))
                .unwrap_or(u64::MAX);
            self.write(&bits.to_le_bytes());
        }
    }
}

/// The field a tailing request sorts and bounds by.
fn tail_field(kind: DataType) -> &'static str {
    match kind.family() {
        Family::Activity => "created",
        Family::Alert => "date",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_without_an_id_get_a_stand_in_from_their_content() {
        let print = |json: &str| {
            let mut bytes = json.as_bytes().to_vec();
            let tape = simd_json::to_tape(&mut bytes).expect("JSON");
            let record = tape.as_value().as_object().expect("object");
            let mut out = String::new();
            Cursor::fingerprint(&record, &mut out);
            out
        };
        let a = print(r#"{"date":5,"title":"x","entities":[{"id":1}]}"#);
        assert_eq!(a.len(), 17);
        assert!(a.starts_with('#'));
        assert_eq!(a, print(r#"{"date":5,"title":"x","entities":[{"id":1}]}"#));
        for other in [
            r#"{"date":5,"title":"y","entities":[{"id":1}]}"#,
            r#"{"date":5,"title":"x","entities":[{"id":2}]}"#,
            r#"{"date":5,"titl":"ex","entities":[{"id":1}]}"#,
            r#"{"date":5,"title":"x","entities":[]}"#,
        ] {
            assert_ne!(a, print(other), "{other}");
        }
    }

    // A whole parsed page's paging facts and the cursor's walk over them
    // in one call: the tests' way in to `page_facts`, `record_facts` and
    // `PageAdvance` (the pipeline streams records instead).

    /// What a page says, as far as paging is concerned. The ids borrow from
    /// the parsed page: reading them allocates nothing per record.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    struct PageInfo<'page> {
        /// Each record's `_id` (empty when missing), in page order.
        ids: Vec<&'page str>,
        /// Each record's order key (`created` or `date`), when present.
        keys: Vec<Option<i64>>,
        /// `hasNext`.
        has_next: bool,
        /// Scan mode: `nextQueryFilters.date.lte`.
        next_upper: Option<i64>,
    }

    impl Cursor {
        /// Reads the paging facts from a parsed page (its root value).
        fn page_info<'page>(&self, page: Value<'_, 'page>) -> Result<PageInfo<'page>, CursorError> {
            let data = page
                .get("data")
                .and_then(|d| d.as_array())
                .ok_or(CursorError::NotAPage("no data array"))?;
            let (has_next, next_upper) = self.page_facts(page)?;
            let mut info = PageInfo {
                has_next,
                ids: Vec::with_capacity(data.len()),
                keys: Vec::with_capacity(data.len()),
                next_upper,
            };
            for record in data.iter() {
                let Some(record) = record.as_object() else {
                    return Err(CursorError::NotAPage("a record is not an object"));
                };
                let (id, key) = self.record_facts(&record);
                info.ids.push(id);
                info.keys.push(key);
            }
            Ok(info)
        }

        /// Which records of the page to deliver (indices into the page), and
        /// the cursor once they are delivered.
        fn advance(&self, info: &PageInfo<'_>) -> Result<(Vec<usize>, Cursor), CursorError> {
            let mut scratch = Vec::new();
            let mut page = self.begin_page(&mut scratch);
            let deliver = info
                .ids
                .iter()
                .zip(&info.keys)
                .enumerate()
                .filter_map(|(index, (id, key))| page.record(id, *key).then_some(index))
                .collect();
            let next = page.finish(info.has_next, info.next_upper)?;
            Ok((deliver, next))
        }
    }

    fn info<'a>(records: &[(&'a str, i64)], has_next: bool) -> PageInfo<'a> {
        PageInfo {
            ids: records.iter().map(|(id, _)| *id).collect(),
            keys: records.iter().map(|(_, key)| Some(*key)).collect(),
            has_next,
            next_upper: None,
        }
    }

    #[test]
    fn tail_drops_boundary_duplicates_and_moves_on() {
        let cursor = Cursor {
            kind: DataType::Alerts,
            position: 100,
            boundary_ids: vec!["a".into(), "b".into()],
            skip: 0,
            scan: None,
            ahead: Vec::new(),
        };
        let page = info(
            &[("a", 100), ("b", 100), ("c", 100), ("d", 105), ("e", 105)],
            false,
        );
        let (deliver, next) = cursor.advance(&page).expect("moves");
        assert_eq!(deliver, [2, 3, 4]);
        assert_eq!(next.position, 105);
        assert_eq!(next.boundary_ids, ["d", "e"]);
        assert_eq!(next.skip, 0);
        // The same page again (nothing new yet) delivers nothing.
        let (again, same) = next
            .advance(&info(&[("d", 105), ("e", 105)], false))
            .expect("ok");
        assert!(again.is_empty());
        assert_eq!(same.position, 105);
    }

    #[test]
    fn a_full_page_at_one_millisecond_is_stepped_over() {
        let cursor = Cursor::start(DataType::Alerts, 1_000, 500);
        let ids: Vec<String> = (0..100).map(|n| format!("id{n}")).collect();
        let page = PageInfo {
            ids: ids.iter().map(String::as_str).collect(),
            keys: vec![Some(500); 100],
            has_next: true,
            next_upper: None,
        };
        let (deliver, next) = cursor.advance(&page).expect("moves");
        assert_eq!(deliver.len(), 100);
        assert_eq!(next.position, 500);
        assert_eq!(next.boundary_ids.len(), 100);
        // The next request must not ask for the same 100 again.
        assert_eq!(next.skip, 100);
        assert!(next.request_body(None).contains("\"skip\":100"));
        // A page past the run clears the skip.
        let (deliver, after) = next.advance(&info(&[("n", 501)], false)).expect("moves");
        assert_eq!((deliver, after.position, after.skip), (vec![0], 501, 0));
    }

    #[test]
    fn backfill_follows_next_filters_then_windows_follow() {
        let cursor = Cursor::start(DataType::Activities, 10_000, 4_000);
        let body = cursor.request_body(None);
        assert!(body.contains("\"isScan\":true"), "{body}");
        assert!(body.contains("\"date\":{\"gte\":6000}"), "{body}");
        assert!(body.contains("\"created\":{\"lte\":10000}"), "{body}");
        let mut page = info(&[("x", 9_000), ("y", 8_000)], true);
        page.next_upper = Some(8_000);
        let (deliver, next) = cursor.advance(&page).expect("moves");
        assert_eq!(deliver, [0, 1]);
        assert_eq!(next.scan.as_ref().and_then(|s| s.date_upper), Some(8_000));
        assert!(next.request_body(None).contains("\"lte\":8000"));
        let (_, mut done) = next.advance(&info(&[("z", 7_000)], false)).expect("moves");
        assert!(!done.scanning() && !done.backfilling());
        assert_eq!(done.position, 10_001);
        // The next poll scans the ingestion window since the backfill.
        done.begin_window(25_000);
        let window = done.request_body(None);
        assert!(
            window.contains("\"created\":{\"gte\":10001,\"lte\":25000}"),
            "{window}"
        );
        assert!(!window.contains("\"date\""), "{window}");
        let (_, after) = done.advance(&info(&[], false)).expect("moves");
        assert_eq!((after.position, after.scanning()), (25_001, false));
        // hasNext without a next filter is a malformed page.
        assert_eq!(
            next.advance(&info(&[("z", 7_000)], true)),
            Err(CursorError::NoNextFilter)
        );
        // A next filter that does not move back would repeat the page.
        let mut stuck = info(&[("z", 7_000)], true);
        stuck.next_upper = Some(8_000);
        assert!(matches!(
            next.advance(&stuck),
            Err(CursorError::NoProgress(_))
        ));
    }

    #[test]
    fn a_record_dated_far_ahead_is_delivered_once_and_the_cursor_stays_with_the_clock() {
        let now = crate::clock::now_ms();
        let alerts = Cursor::start(DataType::Alerts, now, 60_000);
        let year_2100 = 4_102_444_800_000;
        let page = info(
            &[
                ("future", year_2100),
                ("huge", i64::MAX),
                ("normal", now - 500),
            ],
            false,
        );
        let (deliver, next) = alerts.advance(&page).expect("moves");
        assert_eq!(deliver, [0, 1, 2]);
        assert_eq!(next.position, now - 500, "the clock, not the year 2100");
        assert_eq!(next.ahead.len(), 2);
        // Listed again by the next request: not delivered again.
        let again = info(
            &[
                ("future", year_2100),
                ("huge", i64::MAX),
                ("later", now - 100),
            ],
            false,
        );
        let (deliver, after) = next.advance(&again).expect("moves");
        assert_eq!(deliver, [2]);
        assert_eq!(after.position, now - 100);
        assert_eq!(after.ahead, next.ahead);
        // A checkpoint that was moved ahead of the clock starts from now.
        let mut saved = after;
        saved.position = year_2100;
        let (resumed, gap) = Cursor::resume(saved, now, 60_000);
        assert_eq!((resumed.position, gap), (now, None));
    }

    #[test]
    fn a_tail_page_that_leaves_the_cursor_where_it_was_cannot_say_more_follow() {
        let alerts = Cursor::start(DataType::Alerts, 10_000, 4_000);
        let (_, at_a) = alerts.advance(&info(&[("a", 7_000)], true)).expect("moves");
        assert_eq!(at_a.position, 7_000);
        assert!(matches!(
            at_a.advance(&info(&[("a", 7_000)], true)),
            Err(CursorError::NoProgress(_))
        ));
        // Without hasNext the same page is simply caught up.
        assert!(at_a.advance(&info(&[("a", 7_000)], false)).is_ok());
        // A record from before the cursor is not delivered again.
        let (deliver, _) = at_a
            .advance(&info(&[("old", 6_999), ("b", 7_001)], false))
            .expect("moves");
        assert_eq!(deliver, [1]);
    }

    #[test]
    fn windows_are_only_for_activities() {
        let mut alerts = Cursor::start(DataType::Alerts, 10_000, 4_000);
        alerts.begin_window(20_000);
        assert!(!alerts.scanning());
    }

    #[test]
    fn user_filters_are_kept_and_the_cursor_wins() {
        let mut bytes = br#"{"service":{"eq":[11161]},"date":{"gte":1,"lt":99999}}"#.to_vec();
        let user = simd_json::to_owned_value(&mut bytes).expect("json");
        let cursor = Cursor::start(DataType::Alerts, 10_000, 4_000);
        let body = cursor.request_body(Some(&user));
        assert!(body.contains("\"service\":{\"eq\":[11161]}"), "{body}");
        // The user's upper bound stays; the cursor's lower bound replaces theirs.
        assert!(body.contains("\"gte\":6000"), "{body}");
        assert!(
            body.contains("\"lt\":99999") && !body.contains("\"gte\":1,"),
            "{body}"
        );
    }

    #[test]
    fn an_old_cursor_restarts_within_the_window_and_reports_the_gap() {
        let old = Cursor {
            kind: DataType::Alerts,
            position: 1_000,
            boundary_ids: vec![],
            skip: 0,
            scan: None,
            ahead: Vec::new(),
        };
        let (cursor, gap) = Cursor::resume(old.clone(), 100_000, 10_000);
        assert_eq!(
            gap,
            Some(SkippedRange {
                from: 1_000,
                to: 90_000
            })
        );
        assert_eq!(cursor.position, 90_000);
        let (kept, none) = Cursor::resume(old.clone(), 5_000, 10_000);
        assert_eq!((kept, none), (old, None));
    }

    #[test]
    fn page_info_reads_the_fields() {
        let cursor = Cursor::start(DataType::Activities, 10_000, 4_000);
        let mut parser = crate::parse::Parser::new();
        // (ids, keys, next_upper) of a page.
        type Facts = (Vec<String>, Vec<Option<i64>>, Option<i64>);
        let mut info = |json: &[u8]| -> Result<Facts, String> {
            let mut bytes = json.to_vec();
            parser
                .inspect(&mut bytes, |root| {
                    cursor.page_info(root).map(|page| {
                        let ids = page.ids.iter().map(|id| (*id).to_owned()).collect();
                        (ids, page.keys, page.next_upper)
                    })
                })
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        };
        let (ids, keys, next_upper) = info(br#"{"data":[{"_id":"a","timestamp":9000,"created":9500}],"hasNext":true,"nextQueryFilters":{"date":{"gte":6000,"lte":9000}}}"#)
            .expect("a page");
        assert_eq!(ids, ["a"]);
        assert_eq!(keys, [Some(9000)]);
        assert_eq!(next_upper, Some(9000));
        assert!(info(b"{\"data\":5}").is_err());
        assert!(info(b"{\"data\":[],\"hasNext\":").is_err());
        assert!(info(b"{\"data\":[1],\"hasNext\":false}").is_err());
    }
}
