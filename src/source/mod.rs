//! Where records come from: one folder per upstream, and what they share.
//!
//! A source turns a tenant's settings into HTTP requests for one data type
//! at a time and hands back each response body whole, with the cursor that
//! asked for it; the cursor reads the page's paging facts (is there a next
//! page, where does it start) and walks its records, so that nothing is
//! fetched twice or skipped. Everything a source does for a tenant shares
//! that tenant's [`budget::RequestBudget`], since the upstream counts
//! requests per tenant, not per data type.
//!
//! - [`cas`]: the Defender for Cloud Apps (formerly Cloud App Security)
//!   REST API, `/api/v1/alerts/` and `/api/v1/activities/`.
//! - [`graph`]: Microsoft Graph (`alerts_v2`, advanced hunting), whose
//!   cursor is a time window rather than a paging token.
//!
//! [`Position`] is where one data type stands, whichever upstream serves
//! it: what a page was asked with and what a checkpoint holds.

pub mod budget;
pub mod cas;
pub mod entra;
pub mod graph;
pub mod http;

use std::sync::Arc;

use crate::data_type::DataType;
use cas::cursor::Cursor;
use graph::record::GraphSource;
use graph::window::WindowCursor;

/// Where one data type stands: its cursor, of its upstream's kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    /// A legacy API data type.
    Cas(Cursor),
    /// A Graph data type.
    Graph(GraphPosition),
}

/// Where a Graph data type stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphPosition {
    /// Which Graph data type, and how its windows and keys are read.
    pub source: GraphSource,
    /// Its windows. Shared, since the fetcher, the encoder and the
    /// checkpoint thread each hold the position of a page in flight and
    /// the delivered keys of a busy tenant's late window run to megabytes:
    /// the encoder copies it only to change it.
    pub cursor: Arc<WindowCursor>,
}

impl Position {
    /// The data type.
    pub fn kind(&self) -> DataType {
        match self {
            Position::Cas(cursor) => cursor.kind,
            Position::Graph(graph) => graph.source.kind(),
        }
    }

    /// Epoch ms up to which everything is delivered once this position is
    /// checkpointed (the status's "delivered up to").
    pub fn delivered_until(&self) -> i64 {
        match self {
            Position::Cas(cursor) => cursor.delivered_until(),
            Position::Graph(graph) => graph.cursor.position,
        }
    }
}
