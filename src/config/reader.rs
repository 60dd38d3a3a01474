//! The [`Reader`] that takes the options out of the parsed file one by one and collects every
//! error on the way, its generic helpers (strings, integers, durations, tables, unknown keys)
//! and the rendering of keys and values in error messages.

use std::fmt;
use std::time::Duration;

use toml::{Table, Value};

use super::error::{ConfigError, ConfigKey, Problem};
use super::values::parse_duration;

/// Whether an error about a file key or its environment variable was already reported (used
/// to avoid reporting "missing" for a value that is present but invalid).
pub(super) fn reported(r: &Reader<'_>, path: &str, var: &str) -> bool {
    r.errors.iter().any(|e| match &e.key {
        ConfigKey::File(p) => p == path,
        ConfigKey::Env(v) => *v == var,
        ConfigKey::Syntax { .. } => false,
    })
}

/// Collects the errors while the options are taken out of the parsed file one by one; what is
/// left in a table afterwards is an unknown key.
pub(super) struct Reader<'e> {
    pub(super) errors: Vec<ConfigError>,
    pub(super) env: &'e dyn Fn(&str) -> Option<String>,
}

impl Reader<'_> {
    pub(super) fn push(&mut self, path: String, value: Option<String>, problem: Problem) {
        self.errors.push(ConfigError {
            key: ConfigKey::File(path),
            value,
            problem,
        });
    }

    pub(super) fn wrong_type(&mut self, path: String, value: &Value, expected: &'static str) {
        self.push(
            path,
            Some(render_value(value)),
            Problem::WrongType {
                expected,
                found: value.type_str(),
            },
        );
    }

    /// Takes the table `key` out of `parent` (an empty one when it is absent or has the wrong
    /// type, which is reported).
    pub(super) fn table(&mut self, parent: &mut Table, prefix: &str, key: &str) -> Table {
        match parent.remove(key) {
            None => Table::new(),
            Some(Value::Table(t)) => t,
            Some(other) => {
                self.wrong_type(join(prefix, key), &other, "a table");
                Table::new()
            }
        }
    }

    /// Reports every key left in `table`.
    pub(super) fn unknown_keys(&mut self, table: Table, prefix: &str, known: &[&'static str]) {
        for (key, value) in table {
            self.push(
                join(prefix, &key),
                Some(render_value(&value)),
                Problem::UnknownKey {
                    known: known.to_vec(),
                },
            );
        }
    }

    /// A string option that an environment variable may override: the file's value is
    /// checked even when the variable replaces it.
    pub(super) fn setting<T>(
        &mut self,
        table: &mut Table,
        prefix: &str,
        key: &str,
        var: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let path = join(prefix, key);
        let from_file = self.string(table, prefix, key).and_then(|s| {
            parse(&s)
                .map_err(|reason| {
                    let value = Some(render_secret_aware(&path, &format!("{s:?}"), &s));
                    self.push(path.clone(), value, Problem::Invalid { reason });
                })
                .ok()
        });
        match (self.env)(var).filter(|v| !v.is_empty()) {
            None => from_file,
            Some(s) => match parse(&s) {
                Ok(value) => Some(value),
                Err(reason) => {
                    self.errors.push(ConfigError {
                        key: ConfigKey::Env(var),
                        value: Some(render_secret_aware(var, &format!("{s:?}"), &s)),
                        problem: Problem::Invalid { reason },
                    });
                    None
                }
            },
        }
    }

    pub(super) fn string(&mut self, table: &mut Table, prefix: &str, key: &str) -> Option<String> {
        match table.remove(key)? {
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(join(prefix, key), &other, "a string");
                None
            }
        }
    }

    pub(super) fn integer<T>(
        &mut self,
        table: &mut Table,
        prefix: &str,
        key: &str,
        min: T,
        max: T,
    ) -> Option<T>
    where
        T: TryFrom<i64> + Into<i64> + Copy + fmt::Display,
    {
        let path = join(prefix, key);
        match table.remove(key)? {
            Value::Integer(i) if i >= min.into() && i <= max.into() => T::try_from(i).ok(),
            Value::Integer(i) => {
                self.push(
                    path,
                    Some(i.to_string()),
                    Problem::Invalid {
                        reason: format!("must be between {min} and {max}"),
                    },
                );
                None
            }
            other => {
                self.wrong_type(path, &other, "an integer");
                None
            }
        }
    }

    pub(super) fn duration(
        &mut self,
        table: &mut Table,
        prefix: &str,
        key: &str,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let path = join(prefix, key);
        match table.remove(key)? {
            Value::String(s) => match parse_duration(&s) {
                Ok(d) if d >= min && d <= max => Some(d),
                Ok(_) => {
                    self.push(
                        path,
                        Some(format!("{s:?}")),
                        Problem::Invalid {
                            reason: format!("must be between {min:?} and {max:?}"),
                        },
                    );
                    None
                }
                Err(reason) => {
                    self.push(path, Some(format!("{s:?}")), Problem::Invalid { reason });
                    None
                }
            },
            other => {
                self.wrong_type(
                    path,
                    &other,
                    "a duration string such as \"500ms\", \"5s\", \"10m\" or \"1h\"",
                );
                None
            }
        }
    }

    /// A string option that must not be empty, parsed by `parse`; reported when invalid.
    pub(super) fn checked<T>(
        &mut self,
        table: &mut Table,
        prefix: &str,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let path = join(prefix, key);
        let s = self.string(table, prefix, key)?;
        match parse(&s) {
            Ok(v) => Some(v),
            Err(reason) => {
                let value = Some(render_secret_aware(&path, &format!("{s:?}"), &s));
                self.push(path, value, Problem::Invalid { reason });
                None
            }
        }
    }

    /// Reports `prefix.key` as missing unless an error about it was reported already.
    pub(super) fn require<T>(
        &mut self,
        value: Option<T>,
        path: String,
        reason: &'static str,
    ) -> Option<T> {
        if value.is_none()
            && !self
                .errors
                .iter()
                .any(|e| e.key == ConfigKey::File(path.clone()))
        {
            self.push(path, None, Problem::Missing { reason });
        }
        value
    }
}

/// `prefix.key`, with the key quoted when it is not a bare TOML key.
pub(super) fn join(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// A short rendering of a TOML value for an error message.
pub(super) fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(_) => "[…]".to_string(),
        Value::Table(_) => "{…}".to_string(),
    }
}

/// Hides secrets and database passwords in error messages.
pub(super) fn render_secret_aware(key: &str, rendered: &str, raw: &str) -> String {
    if key.ends_with("token")
        || key.ends_with("secret")
        || key.ends_with("password")
        || key.ends_with("PASSWORD")
        || key.ends_with("SECRET")
        || key.ends_with("TOKEN")
    {
        format!("<hidden, {} characters>", raw.chars().count())
    } else if key.ends_with("url") || key.ends_with("URL") {
        format!("{:?}", redact_password(raw))
    } else {
        rendered.to_string()
    }
}

/// `scheme://user:***@host…` for a URL with a password; other text unchanged.
pub(super) fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use crate::config::tests::errors;

    #[test]
    fn unknown_keys_are_named_by_their_toml_path() {
        let got = errors(
            "[api]\nport = 8080\n[[partners]]\nid = \"9904292000003\"\nnmae = \"x\"\n\
             statuses = [{ message = \"IFTSTA\", code = \"Z07\", status = \"activated\", colour = 1 }]\n\
             [\"odd key\"]\n",
        );
        assert_eq!(
            got,
            [
                "api.port = 8080: unknown key (known here: addr, token, max_connections, header_read_timeout, request_timeout, idle_timeout)",
                "partners[0].statuses[0].colour = 1: unknown key (known here: message, pid, code, status)",
                "partners[0].nmae = \"x\": unknown key (known here: id, transport, statuses, email, signing_cert, encryption_cert, as4_url)",
                "\"odd key\" = {…}: unknown key (known here: own_id, data_dir, database, api, console, webhook, workers, shutdown, log, poll, retry, file_drop, email, as4, partners, routing)",
            ]
        );
    }

    #[test]
    fn a_section_of_the_wrong_type_is_reported() {
        assert_eq!(
            errors("api = \"127.0.0.1:8080\"\npartners = { id = \"1\" }"),
            [
                "api = \"127.0.0.1:8080\": expected a table, found string",
                "partners = {…}: expected an array of tables ([[partners]]), found table",
            ]
        );
    }
}
