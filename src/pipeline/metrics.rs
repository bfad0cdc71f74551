//! The metrics thread: a small HTTP server for `/metrics` (Prometheus)
//! and `/healthz`; what it answers is [`crate::status::metrics`]'s.

use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::RwLock;
use tracing::info;

use super::RunError;
use crate::status::{self, TenantStatus};

/// Serves Prometheus metrics on `/metrics` and health on `/healthz` from a
/// thread of its own. The server stops with the process.
pub(super) fn spawn_metrics(
    address: std::net::SocketAddr,
    registry: Arc<RwLock<Vec<Arc<TenantStatus>>>>,
) -> Result<JoinHandle<()>, RunError> {
    let server = tiny_http::Server::http(address).map_err(|error| RunError::Metrics {
        address,
        reason: error.to_string(),
    })?;
    info!("metrics on http://{}/metrics", server.server_addr());
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let tenants = registry.read().clone();
                let (code, body, content_type) =
                    status::metrics::answer(request.url(), &tenants, crate::clock::now_ms());
                let mut response = tiny_http::Response::from_string(body).with_status_code(code);
                if let Ok(header) =
                    tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
                {
                    response.add_header(header);
                }
                // A client that went away is its own problem.
                let _ = request.respond(response);
            }
        })
        .map_err(RunError::Spawn)
}
