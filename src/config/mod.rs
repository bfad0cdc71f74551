//! Configuration, in two steps: clap (and serde, for the config file)
//! parse the arguments into plain structs, then `build()` validates them
//! once into a plan whose fields can be trusted for the rest of the run
//! ("parse, don't validate").
//!
//! [`cli`] defines the flags and the option structs the file shares;
//! [`mod@file`] reads the file and lays the flags over it; [`build`] turns
//! the result into plans; [`error`] says what was wrong and where.

pub mod build;
pub mod cli;
pub mod error;
pub mod file;

pub use build::{GraphPlan, InputSource, ReplayPlan, RunPlan, ServicePlan};
pub use cli::{
    Cli, Command, CompletionsArgs, DemoArgs, FormatOptions, ManArgs, ReplayArgs, RunArgs,
    ServiceOptions, SimulateArgs, StatusArgs, SyslogOptions, TenantOptions, VERSION,
};
pub use error::ConfigError;
