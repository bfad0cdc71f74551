//! The data types the agent pulls: what every stage calls a stream of
//! records (the API's list, the checkpoint file, the status line, the
//! metric label, the log prefix).
//!
//! It lives at the top of the crate because every stage shares it: the
//! source asks for it, the cursor moves over it, the checkpoint and status
//! files are named after it, and the simulator serves it.

/// One list of records an upstream serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// The legacy API's activities (`/api/v1/activities/`).
    Activities,
    /// The legacy API's alerts (`/api/v1/alerts/`).
    Alerts,
}

impl DataType {
    /// Every data type, in the order the status and metrics list them.
    pub const ALL: [DataType; 2] = [DataType::Activities, DataType::Alerts];

    /// The name in URLs, file names, reports, metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Activities => "activities",
            DataType::Alerts => "alerts",
        }
    }

    /// The data type called `name` (as [`name`](Self::name) writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::DataType;

    #[test]
    fn names_round_trip() {
        for kind in DataType::ALL {
            assert_eq!(DataType::from_name(kind.name()), Some(kind));
        }
        assert_eq!(DataType::from_name("activity"), None);
    }
}
