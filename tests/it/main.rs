//! The integration test binary: every test that runs the built program or
//! crosses module boundaries lives in a module under `tests/it/`.

mod alloc;
mod alloc_path;
mod docs_cli;
mod golden;
mod graph_golden;
mod graph_pull;
mod graph_run;
mod hostile;
mod pull;
mod replay_cli;
mod roundtrip;
mod service;
mod simulator;
mod support;
mod syslog;
