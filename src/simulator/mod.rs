//! A faithful simulator of the Defender for Cloud Apps list API and of the
//! Microsoft Graph endpoints that succeed it ([`graph`]), for tests,
//! benchmarks and the demo: nobody can test years of tailing, 429 storms and
//! late-indexed records against a real tenant.
//!
//! It is built on the crate's own vocabulary (the data types, the clock,
//! the config's option structs); nothing outside this folder depends on it
//! but the binary's `demo` and `simulate` commands, the tests and the
//! benchmarks.

pub mod data;
pub mod graph;
pub mod query;
pub mod server;
pub mod setup;
pub mod tls;

pub use graph::GraphConfig;
pub use server::{Faults, Simulator, SimulatorConfig};
