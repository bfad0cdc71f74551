//! Microsoft Graph, the vendor's successor to the legacy API: security
//! `alerts_v2` for alerts and advanced hunting (`runHuntingQuery` over
//! `CloudAppEvents`) for activities.
//!
//! So far this holds the cursor both data types share ([`window`]) and the
//! requests and answer classification ([`request`]); the
//! HTTP client, the simulator's Graph endpoints and the pipeline's use of
//! them are issue 16's next steps. The mappings to CEF are
//! [`crate::cef::graph_alert`] and [`crate::cef::cloud_app_event`].

pub mod request;
pub mod window;
