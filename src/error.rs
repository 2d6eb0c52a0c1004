//! How a command ends when it does not succeed: one line for the user and an exit code.

/// A command's failure, already phrased as the one line the user sees.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The plan or the command line is invalid; nothing was written (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// The run failed or was incomplete (exit 1).
    #[error("{0}")]
    Failed(String),
    /// Interrupted by SIGINT or SIGTERM (exit 130).
    #[error("{0}")]
    Interrupted(String),
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Invalid(_) => 2,
            Failure::Failed(_) => 1,
            Failure::Interrupted(_) => 130,
        }
    }
}

impl From<crate::plan::PlanError> for Failure {
    fn from(error: crate::plan::PlanError) -> Failure {
        Failure::Invalid(error.to_string())
    }
}
