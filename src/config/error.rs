//! What a configuration error says: the key ([`ConfigKey`]), the value as written and the
//! [`Problem`], and the exit code of `serve` when there are any.

use std::fmt;

/// The exit code of `serve` when the configuration has errors: 64, `EX_USAGE` of BSD
/// `sysexits.h` ("the command was used incorrectly"), as linkerd2-proxy and other daemons use
/// it; systemd's `Restart=on-failure` then keeps retrying a unit that can never start, so the
/// unit names 64 in `RestartPreventExitStatus`.
pub fn exit_code_for_config_errors() -> u8 {
    64
}

/// Where an error was found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigKey {
    /// A key of the file, as a TOML path (`api.addr`, `partners[1].statuses[0].code`).
    File(String),
    /// An environment variable.
    Env(&'static str),
    /// A place in the file that is not valid TOML (1-based line and column).
    Syntax {
        /// Line.
        line: usize,
        /// Column (in characters).
        column: usize,
    },
}

impl fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigKey::File(path) => f.write_str(path),
            ConfigKey::Env(name) => f.write_str(name),
            ConfigKey::Syntax { line, column } => {
                write!(f, "config file line {line}, column {column}")
            }
        }
    }
}

/// What is wrong with a key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The file is not valid TOML.
    Syntax {
        /// The TOML parser's message.
        message: String,
    },
    /// The key is not an option (a typo, or an option of another section).
    UnknownKey {
        /// The options allowed at this place.
        known: Vec<&'static str>,
    },
    /// The value has the wrong TOML type.
    WrongType {
        /// The type the option takes.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// The value has the right type but is not allowed.
    Invalid {
        /// Why.
        reason: String,
    },
    /// A required key is missing.
    Missing {
        /// Why it is required.
        reason: &'static str,
    },
    /// The value names something that is not built yet.
    NotAvailableYet {
        /// The issue that builds it.
        issue: u32,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Syntax { message } => write!(f, "not valid TOML: {message}"),
            Problem::UnknownKey { known } => {
                write!(f, "unknown key (known here: {})", known.join(", "))
            }
            Problem::WrongType { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            Problem::Invalid { reason } => f.write_str(reason),
            Problem::Missing { reason } => write!(f, "missing: {reason}"),
            Problem::NotAvailableYet { issue } => write!(f, "not available yet (issue {issue})"),
        }
    }
}

/// One configuration error: the key, the value as written and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The TOML path or environment variable.
    pub key: ConfigKey,
    /// The value as written (TOML strings quoted); secrets are shown as `<hidden>` and the
    /// password of a database URL as `***`. `None` for a missing key or a syntax error.
    pub value: Option<String>,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.key, &self.value) {
            (ConfigKey::Env(name), Some(value)) => write!(f, "{name}={value}")?,
            (key, Some(value)) => write!(f, "{key} = {value}")?,
            (key, None) => write!(f, "{key}")?,
        }
        write!(f, ": {}", self.problem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_exit_with_ex_usage() {
        assert_eq!(exit_code_for_config_errors(), 64);
    }
}
