//! Microsoft Graph, the vendor's successor to the legacy API: security
//! `alerts_v2` for alerts and advanced hunting (`runHuntingQuery` over
//! `CloudAppEvents`) for activities.
//!
//! So far this holds the cursor both data types share ([`window`]), the
//! requests and the classification of answers ([`request`]) and the HTTPS
//! client ([`client`]); the simulator serves both endpoints
//! ([`crate::simulator::graph`]). The pipeline does not use them yet: the
//! data types, their checkpoints and their configuration are issue 16's
//! next step. The mappings to CEF are
//! [`crate::cef::graph_alert`] and [`crate::cef::cloud_app_event`].

pub mod client;
pub mod request;
pub mod window;
