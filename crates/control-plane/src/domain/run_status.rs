//! The run status model and the one function that says which transitions are legal.
//!
//! ```text
//! queued → provisioning → running → reporting → completed | failed | partial_failed
//!    └──────────┴────────────┴──────────┴──→ cancelled | timed_out | infra_failed
//! ```

use switchyard_proto::controlplane::v1::RunStatus as ProtoStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Queued,
    Provisioning,
    Running,
    Reporting,
    Completed,
    Failed,
    PartialFailed,
    TimedOut,
    InfraFailed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a run cannot go from {} to {}", from.as_str(), to.as_str())]
pub struct IllegalTransition {
    pub from: RunStatus,
    pub to: RunStatus,
}

impl RunStatus {
    pub const ALL: [RunStatus; 10] = [
        RunStatus::Queued,
        RunStatus::Provisioning,
        RunStatus::Running,
        RunStatus::Reporting,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::PartialFailed,
        RunStatus::TimedOut,
        RunStatus::InfraFailed,
        RunStatus::Cancelled,
    ];

    /// The lowercase name of the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Provisioning => "provisioning",
            RunStatus::Running => "running",
            RunStatus::Reporting => "reporting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::PartialFailed => "partial_failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::InfraFailed => "infra_failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Completed
                | RunStatus::Failed
                | RunStatus::PartialFailed
                | RunStatus::TimedOut
                | RunStatus::InfraFailed
                | RunStatus::Cancelled
        )
    }

    /// The state machine. Every status change of a run goes through here.
    pub fn transition(self, to: RunStatus) -> Result<RunStatus, IllegalTransition> {
        use RunStatus::*;
        let legal = match (self, to) {
            (Queued, Provisioning) | (Provisioning, Running) | (Running, Reporting) => true,
            (Reporting, Completed | Failed | PartialFailed) => true,
            // Ends that can come at any point before the run is final.
            (Queued | Provisioning | Running | Reporting, Cancelled | TimedOut | InfraFailed) => {
                true
            }
            // Replaying a dead letter resumes a run that ended because of it.
            (Failed | PartialFailed, Running) => true,
            _ => false,
        };
        if legal {
            Ok(to)
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }

    pub fn to_proto(self) -> ProtoStatus {
        match self {
            RunStatus::Queued => ProtoStatus::Queued,
            RunStatus::Provisioning => ProtoStatus::Provisioning,
            RunStatus::Running => ProtoStatus::Running,
            RunStatus::Reporting => ProtoStatus::Reporting,
            RunStatus::Completed => ProtoStatus::Completed,
            RunStatus::Failed => ProtoStatus::Failed,
            RunStatus::PartialFailed => ProtoStatus::PartialFailed,
            RunStatus::TimedOut => ProtoStatus::TimedOut,
            RunStatus::InfraFailed => ProtoStatus::InfraFailed,
            RunStatus::Cancelled => ProtoStatus::Cancelled,
        }
    }

    /// `None` for UNSPECIFIED.
    pub fn from_proto(status: ProtoStatus) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.to_proto() == status)
    }
}

#[cfg(test)]
mod tests {
    use super::RunStatus::{self, *};

    /// Every legal pair, written out by hand; every other pair of the 100 must be refused.
    const LEGAL: &[(RunStatus, RunStatus)] = &[
        (Queued, Provisioning),
        (Queued, Cancelled),
        (Queued, TimedOut),
        (Queued, InfraFailed),
        (Provisioning, Running),
        (Provisioning, Cancelled),
        (Provisioning, TimedOut),
        (Provisioning, InfraFailed),
        (Running, Reporting),
        (Running, Cancelled),
        (Running, TimedOut),
        (Running, InfraFailed),
        (Reporting, Completed),
        (Reporting, Failed),
        (Reporting, PartialFailed),
        (Reporting, Cancelled),
        (Reporting, TimedOut),
        (Reporting, InfraFailed),
        (Failed, Running),
        (PartialFailed, Running),
    ];

    #[test]
    fn every_pair_is_legal_exactly_when_listed() {
        for from in RunStatus::ALL {
            for to in RunStatus::ALL {
                let expected = LEGAL.contains(&(from, to));
                assert_eq!(
                    from.transition(to).is_ok(),
                    expected,
                    "{} → {}",
                    from.as_str(),
                    to.as_str()
                );
            }
        }
    }

    #[test]
    fn final_statuses_have_no_way_out_but_a_replay() {
        let resumable = [Failed, PartialFailed];
        for from in RunStatus::ALL
            .into_iter()
            .filter(|s| s.is_final() && !resumable.contains(s))
        {
            assert!(
                RunStatus::ALL
                    .iter()
                    .all(|&to| from.transition(to).is_err())
            );
        }
    }

    #[test]
    fn names_and_proto_values_round_trip() {
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
            assert_eq!(RunStatus::from_proto(status.to_proto()), Some(status));
        }
        assert_eq!(RunStatus::parse("done"), None);
    }
}
