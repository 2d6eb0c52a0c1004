//! A target's ACL user and password, read at run time from the environment or a file; the
//! password never shows in `Debug`, logs or messages.

use super::errors::SetupError;
use std::fmt;

use crate::plan::{Auth, PasswordSource};

/// A password read at run time. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    /// The password itself, for the login only.
    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// ACL user and password of a target, resolved from the environment or a file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Credentials {
    /// ACL user; `None` is the default user.
    pub username: Option<String>,
    /// The password, if any.
    pub password: Option<Secret>,
}

impl Credentials {
    /// Reads the password a target names. Errors name the target and the variable or file.
    pub(crate) fn resolve(target: &str, auth: &Auth) -> Result<Credentials, SetupError> {
        let password = match &auth.password {
            None => None,
            Some(PasswordSource::Env(var)) => match std::env::var(var) {
                Ok(value) => Some(Secret(value)),
                Err(_) => {
                    return Err(SetupError::Credentials(format!(
                        "targets.{target}.password_env: the environment variable {var} is not set; export it before running the plan"
                    )));
                }
            },
            Some(PasswordSource::File(path)) => match std::fs::read_to_string(path) {
                Ok(text) => Some(Secret(text.lines().next().unwrap_or("").to_string())),
                Err(e) => {
                    return Err(SetupError::Credentials(format!(
                        "targets.{target}.password_file: cannot read {}: {e}",
                        path.display()
                    )));
                }
            },
        };
        Ok(Credentials {
            username: auth.username.clone(),
            password,
        })
    }

    /// `, user "name"` for messages, or nothing for the default user.
    pub(crate) fn describe_user(&self) -> String {
        match &self.username {
            Some(user) => format!(", user \"{user}\""),
            None => String::new(),
        }
    }
}
