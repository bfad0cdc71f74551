//! Every process exit status the agent uses, in one table, so that the
//! unit file, the README and scripts can rely on them. The numbers follow
//! BSD's `sysexits.h` where one fits, so service managers and operators
//! read them the usual way; `75` (temporary failure) is the one status
//! after which restarting makes sense.
//!
//! | status | name | when |
//! |---|---|---|
//! | 0 | [`OK`] | done, or stopped by a signal after a clean shutdown |
//! | 1 | [`FAILURE`] | `status`, `demo` or `simulate` could not do their job |
//! | 2 | [`BAD_OPTIONS`] | the command line or config file does not make a valid plan |
//! | 65 | [`DATA_ERROR`] | `replay` skipped malformed input (every valid record was written) |
//! | 66 | [`NO_INPUT`] | `replay` could not open or read an input |
//! | 70 | [`INTERNAL`] | a thread panicked: a bug |
//! | 73 | [`CHECKPOINT`] | a checkpoint could not be read or written |
//! | 74 | [`OUTPUT`] | the output failed, or a thread could not be started |
//! | 75 | [`TOO_MANY_ERRORS`] | too many consecutive critical failures (temporary) |
//! | 77 | [`INVALID_TOKEN`] | the API rejected the credentials at start-up |
//! | 78 | [`CLIENT_SETUP`] | the HTTP client or the metrics listener could not be set up |

/// Done (`EX_OK`).
pub const OK: u8 = 0;
/// A helper command (`status`, `demo`, `simulate`) failed.
pub const FAILURE: u8 = 1;
/// Options that do not parse or do not make a valid plan (the status clap
/// itself uses for a malformed command line).
pub const BAD_OPTIONS: u8 = 2;
/// Malformed input was skipped (`EX_DATAERR`).
pub const DATA_ERROR: u8 = 65;
/// An input could not be opened or read (`EX_NOINPUT`).
pub const NO_INPUT: u8 = 66;
/// A bug: a thread panicked (`EX_SOFTWARE`).
pub const INTERNAL: u8 = 70;
/// A checkpoint could not be read or written (`EX_CANTCREAT`).
pub const CHECKPOINT: u8 = 73;
/// The output failed, or a thread could not start (`EX_IOERR`).
pub const OUTPUT: u8 = 74;
/// Too many consecutive critical failures (`EX_TEMPFAIL`, so a service
/// manager restarts the agent).
pub const TOO_MANY_ERRORS: u8 = 75;
/// The API rejected the credentials at start-up (`EX_NOPERM`).
pub const INVALID_TOKEN: u8 = 77;
/// The HTTP client could not be set up, e.g. an unusable CA file, or the
/// metrics address cannot be listened on (`EX_CONFIG`).
pub const CLIENT_SETUP: u8 = 78;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_means_one_thing() {
        let all = [
            OK,
            FAILURE,
            BAD_OPTIONS,
            DATA_ERROR,
            NO_INPUT,
            INTERNAL,
            CHECKPOINT,
            OUTPUT,
            TOO_MANY_ERRORS,
            INVALID_TOKEN,
            CLIENT_SETUP,
        ];
        let mut sorted = all.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "two names share a status");
    }
}
