//! The Defender for Cloud Apps REST API: the HTTPS client (credentials,
//! retries, proxy) and the cursors that page through alerts and activities
//! without gaps or repeats.

pub mod client;
pub mod cursor;
