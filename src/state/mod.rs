//! What the agent remembers across restarts, in one state directory: a
//! checkpoint per tenant and data type (where to resume without losing or
//! repeating records) and, beside it, the status files (see
//! [`crate::status`]). Both are written with [`atomic::write_atomically`]
//! and named by [`names`].

pub mod atomic;
pub mod checkpoint;
pub mod names;
