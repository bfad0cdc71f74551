//! A faithful simulator of the Defender for Cloud Apps list API, for tests,
//! benchmarks and the demo: nobody can test years of tailing, 429 storms and
//! late-indexed records against a real tenant.

pub mod data;
pub mod query;
pub mod server;
pub mod tls;

pub use server::{Faults, Simulator, SimulatorConfig};
