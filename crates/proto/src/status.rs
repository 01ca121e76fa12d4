//! Driver statuses, stored and broadcast in upper case.

use serde::{Deserialize, Serialize};

/// A driver's status. Parsed case-insensitively, always sent in upper case
/// (the deployed Map compares upper-case values). There is no default: a
/// driver that never reported one has none (contract v1.3 §4) — the WeCare
/// backend owns the statuses it sets itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum DriverStatus {
    Available,
    Busy,
    OnTrip,
    OnDuty,
    OffDuty,
    Unavailable,
    Offline,
}

/// The string is not one of the seven statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown driver status")]
pub struct UnknownStatus;

impl DriverStatus {
    /// Every status, in the contract's order.
    pub const ALL: [DriverStatus; 7] =
        [Self::Available, Self::Busy, Self::OnTrip, Self::OnDuty, Self::OffDuty, Self::Unavailable, Self::Offline];

    /// The upper-case wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Available => "AVAILABLE",
            Self::Busy => "BUSY",
            Self::OnTrip => "ON_TRIP",
            Self::OnDuty => "ON_DUTY",
            Self::OffDuty => "OFF_DUTY",
            Self::Unavailable => "UNAVAILABLE",
            Self::Offline => "OFFLINE",
        }
    }
}

impl std::str::FromStr for DriverStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|st| st.as_str().eq_ignore_ascii_case(s)).ok_or(UnknownStatus)
    }
}

impl std::fmt::Display for DriverStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively() {
        assert_eq!("busy".parse(), Ok(DriverStatus::Busy));
        assert_eq!("On_Trip".parse(), Ok(DriverStatus::OnTrip));
        assert_eq!("ON-TRIP".parse::<DriverStatus>(), Err(UnknownStatus));
        assert_eq!("".parse::<DriverStatus>(), Err(UnknownStatus));
    }
}
