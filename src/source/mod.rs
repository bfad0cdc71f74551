//! Pulling records from the Defender for Cloud Apps API: the HTTPS client
//! (credentials, retries, proxy), the per-tenant request budget, and the
//! cursors that page through each data type without gaps or repeats.

pub mod budget;
pub mod client;
pub mod cursor;
