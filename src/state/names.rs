//! The names of the files a tenant keeps in the state directory.
//!
//! Tenant names are the user's (by default the API host); characters a
//! file name should not hold become `_`. Checkpoint and status files share
//! the stem, so `ls` shows each tenant's files together.

use crate::data_type::DataType;

/// Ending of a tenant's status file.
pub const STATUS_SUFFIX: &str = ".status.json";
/// Ending of a checkpoint file, after the data type's name.
pub const CHECKPOINT_SUFFIX: &str = ".checkpoint.json";

/// The file name stem for `tenant`.
pub fn file_stem(tenant: &str) -> String {
    tenant
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The checkpoint file of `tenant`'s `kind`.
pub fn checkpoint_file(tenant: &str, kind: DataType) -> String {
    format!("{}.{}{CHECKPOINT_SUFFIX}", file_stem(tenant), kind.name())
}

/// The status file of `tenant`.
pub fn status_file(tenant: &str) -> String {
    format!("{}{STATUS_SUFFIX}", file_stem(tenant))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_safe_characters_only() {
        assert_eq!(file_stem("api.example-1"), "api.example-1");
        assert_eq!(file_stem("a/b c:ü"), "a_b_c__");
        assert_eq!(
            checkpoint_file("t 1", DataType::Alerts),
            "t_1.alerts.checkpoint.json"
        );
        assert_eq!(status_file("t 1"), "t_1.status.json");
    }
}
