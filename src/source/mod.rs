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
//! - [`graph`]: Microsoft Graph (`alerts_v2`, advanced hunting): so far the
//!   time-window cursor, not yet a client.

pub mod budget;
pub mod cas;
pub mod entra;
pub mod graph;
pub mod http;
