//! The library's error: what [`run`](crate::run) and [`verify`](crate::verify) return when
//! they do not succeed (the command line's [`Failure`] with the result of a run that began).

use crate::error::{Failure, one_line};
use crate::result::RunResult;

/// Why [`run`](crate::run) or [`verify`](crate::verify) did not succeed: one line, its
/// kind, and the result of a run that got as far as writing (a failed or interrupted run
/// still says what it wrote).
#[derive(Debug)]
pub struct RunError {
    kind: ErrorKind,
    message: String,
    result: Option<Box<RunResult>>,
}

/// What kind of failure a [`RunError`] is; the command line's exit code follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The plan, the options or the environment (a password variable, a flush of a remote
    /// server not confirmed) are invalid: nothing was written (exit code 2).
    Invalid,
    /// A server failed the run, or a stage did not finish (exit code 1).
    Failed,
    /// SIGINT or SIGTERM stopped it (exit code 130).
    Interrupted,
}

impl RunError {
    pub(crate) fn new(failure: Failure, result: Option<RunResult>) -> RunError {
        let (kind, message) = match failure {
            Failure::Invalid(m) => (ErrorKind::Invalid, m),
            Failure::Failed(m) => (ErrorKind::Failed, m),
            Failure::Interrupted(m) => (ErrorKind::Interrupted, m),
        };
        RunError {
            kind,
            message: one_line(&message),
            result: result.map(Box::new),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The result of a run that failed or was interrupted once it had begun: what it wrote,
    /// stage by stage. `None` when nothing was written.
    pub fn result(&self) -> Option<&RunResult> {
        self.result.as_deref()
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RunError {}
