//! The data types the agent pulls: what every stage calls a stream of
//! records (the API's list, the checkpoint file, the status line, the
//! metric label, the log prefix).
//!
//! It lives at the top of the crate because every stage shares it: the
//! source asks for it, the cursor moves over it, the checkpoint and status
//! files are named after it, and the simulator serves it.

/// One list of records an upstream serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataType {
    /// The legacy API's activities (`/api/v1/activities/`).
    Activities,
    /// The legacy API's alerts (`/api/v1/alerts/`).
    Alerts,
    /// Microsoft Graph's security alerts (`/v1.0/security/alerts_v2`).
    GraphAlerts,
    /// Advanced hunting's `CloudAppEvents` table
    /// (`/v1.0/security/runHuntingQuery`).
    CloudAppEvents,
}

/// What the records of a data type are, whichever upstream serves them:
/// each family has its own CEF line shape and its own time field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// Something a user or app did (activities, `CloudAppEvents` rows).
    Activity,
    /// A detection (legacy alerts, Graph alerts).
    Alert,
}

impl DataType {
    /// Every data type, in the order the status and metrics list them.
    pub const ALL: [DataType; 4] = [
        DataType::Activities,
        DataType::Alerts,
        DataType::GraphAlerts,
        DataType::CloudAppEvents,
    ];

    /// The name in URLs, file names, reports, metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Activities => "activities",
            DataType::Alerts => "alerts",
            DataType::GraphAlerts => "graph-alerts",
            DataType::CloudAppEvents => "cloud-app-events",
        }
    }

    /// Whether Microsoft Graph serves it (otherwise the legacy API does).
    pub fn is_graph(self) -> bool {
        matches!(self, DataType::GraphAlerts | DataType::CloudAppEvents)
    }

    /// What its records are.
    pub fn family(self) -> Family {
        match self {
            DataType::Activities | DataType::CloudAppEvents => Family::Activity,
            DataType::Alerts | DataType::GraphAlerts => Family::Alert,
        }
    }

    /// Its place in [`ALL`](Self::ALL), for per-type arrays.
    pub fn index(self) -> usize {
        match self {
            DataType::Activities => 0,
            DataType::Alerts => 1,
            DataType::GraphAlerts => 2,
            DataType::CloudAppEvents => 3,
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
        for (index, kind) in DataType::ALL.into_iter().enumerate() {
            assert_eq!(DataType::from_name(kind.name()), Some(kind));
            assert_eq!(kind.index(), index);
        }
        assert_eq!(DataType::from_name("activity"), None);
    }
}
