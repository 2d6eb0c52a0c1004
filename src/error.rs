//! How a command ends when it does not succeed: one line for the user and an exit code.

/// A command's failure, already phrased as the one line the user sees (shown as one line
/// even when a message from elsewhere, such as a library's error, spans several).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The plan or the command line is invalid; nothing was written (exit 2).
    #[error("{}", one_line(.0))]
    Invalid(String),
    /// The run failed or was incomplete (exit 1).
    #[error("{}", one_line(.0))]
    Failed(String),
    /// Interrupted by SIGINT or SIGTERM (exit 130).
    #[error("{}", one_line(.0))]
    Interrupted(String),
}

/// `text` on one line: each line break, with the blanks around it, becomes one space.
pub(crate) fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_shown_on_one_line() {
        let failure = Failure::Failed(
            "target \"main\": INFO failed: Parse error at 0\nUnexpected end\rof input\r\n\n".into(),
        );
        assert_eq!(
            failure.to_string(),
            "target \"main\": INFO failed: Parse error at 0 Unexpected end of input"
        );
    }
}
