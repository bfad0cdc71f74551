//! The integration test binary: every test that runs the built program or
//! crosses module boundaries lives in a module under `tests/it/`.

#[path = "it/alloc.rs"]
mod alloc;
#[path = "it/golden.rs"]
mod golden;
#[path = "it/pull.rs"]
mod pull;
#[path = "it/replay_cli.rs"]
mod replay_cli;
#[path = "it/roundtrip.rs"]
mod roundtrip;
#[path = "it/service.rs"]
mod service;
#[path = "it/simulator.rs"]
mod simulator;
#[path = "it/support/mod.rs"]
mod support;
#[path = "it/syslog.rs"]
mod syslog;
