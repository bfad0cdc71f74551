//! Microsoft Graph, the vendor's successor to the legacy API: security
//! `alerts_v2` for alerts and advanced hunting (`runHuntingQuery` over
//! `CloudAppEvents`) for activities.
//!
//! - [`window`]: the cursor both data types share, time windows that
//!   settle before they are asked for and a late span asked again;
//! - [`record`]: what the cursor reads of each record (time and key);
//! - [`request`]: the requests, and what each answer that is not a page
//!   means;
//! - [`client`]: the HTTPS client (Entra token, budget, throttling).
//!
//! The pipeline's fetch thread drives them ([`crate::pipeline::fetch`]);
//! the mappings to CEF are [`crate::cef::graph_alert`] and
//! [`crate::cef::cloud_app_event`]; the simulator serves both endpoints
//! ([`crate::simulator::graph`]).

pub mod client;
pub mod record;
pub mod request;
pub mod window;
