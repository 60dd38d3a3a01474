//! Reading request bodies and query strings field by field, collecting every problem.

use std::str::FromStr;

use chrono::NaiveDate;
use serde_json::{Map, Value};

use super::error::{ApiError, FieldError};
use crate::store::PageRequest;

/// True for a value that can be a `next_cursor` (an id the gateway gave: a lowercase prefix,
/// `_`, then letters, digits or `-`).
fn is_cursor(value: &str) -> bool {
    value.len() <= 80
        && value.split_once('_').is_some_and(|(prefix, rest)| {
            (2..=8).contains(&prefix.len())
                && prefix.bytes().all(|b| b.is_ascii_lowercase())
                && !rest.is_empty()
                && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// How far ahead an order's date may lie, in years.
pub const MAX_YEARS_AHEAD: u32 = 10;

/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest `limit`: bounds the work one request can cause.
pub const MAX_LIMIT: u32 = 500;

/// A JSON object body, read field by field.
#[derive(Debug)]
pub struct Body {
    object: Map<String, Value>,
    /// Problems found so far.
    pub errors: Vec<FieldError>,
}

impl Body {
    /// Parses `bytes` as a JSON object and reports every field not in `allowed`.
    pub fn parse(bytes: &[u8], allowed: &[&str]) -> Result<Body, ApiError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            ApiError::general(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        let Value::Object(object) = value else {
            return Err(ApiError::general(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_json",
                "the body must be a JSON object",
            ));
        };
        let errors = object
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .map(|k| {
                FieldError::new(
                    k,
                    "unknown_field",
                    format!("{k} is not a field of this request"),
                )
            })
            .collect();
        Ok(Body { object, errors })
    }

    /// True if the field is present (even as `null`).
    pub fn has(&self, name: &str) -> bool {
        self.object.contains_key(name)
    }

    /// Longest identifier the supplier core may give (a subscription): kept well below what an
    /// index entry of either database holds.
    pub const MAX_IDENTIFIER: usize = 128;

    /// An identifier field (a subscription): a string of 1 to [`Body::MAX_IDENTIFIER`]
    /// characters without control characters.
    pub fn identifier(&mut self, name: &str, required: bool) -> Option<String> {
        let value = self.string(name, required)?;
        if value.chars().count() > Self::MAX_IDENTIFIER || value.chars().any(char::is_control) {
            self.errors.push(FieldError::new(
                name,
                "invalid",
                format!(
                    "{name} must have 1 to {} characters and no control characters",
                    Self::MAX_IDENTIFIER
                ),
            ));
            return None;
        }
        Some(value)
    }

    /// A string field; `None` (with an error when `required`) if absent, null or not a string.
    pub fn string(&mut self, name: &str, required: bool) -> Option<String> {
        match self.object.get(name) {
            None | Some(Value::Null) => {
                if required {
                    self.errors.push(FieldError::new(
                        name,
                        "required",
                        format!("{name} is required"),
                    ));
                }
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.errors.push(FieldError::new(
                    name,
                    "required",
                    format!("{name} must not be empty"),
                ));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.errors.push(FieldError::new(
                    name,
                    "invalid",
                    format!("{name} must be a string"),
                ));
                None
            }
        }
    }

    /// A string field parsed with `FromStr` (IDs with check digits, dates); the parser's
    /// message on failure.
    pub fn parsed<T>(&mut self, name: &str, required: bool) -> Option<T>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let text = self.string(name, required)?;
        match text.parse() {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors
                    .push(FieldError::new(name, "invalid", e.to_string()));
                None
            }
        }
    }

    /// A field read with serde (enums such as the reduction type), with the allowed values in
    /// the message.
    pub fn value<T: serde::de::DeserializeOwned>(
        &mut self,
        name: &str,
        required: bool,
        allowed: &str,
    ) -> Option<T> {
        match self.object.get(name) {
            None | Some(Value::Null) => {
                if required {
                    self.errors.push(FieldError::new(
                        name,
                        "required",
                        format!("{name} is required"),
                    ));
                }
                None
            }
            Some(v) => match serde_json::from_value(v.clone()) {
                Ok(t) => Some(t),
                Err(_) => {
                    self.errors.push(FieldError::new(
                        name,
                        "invalid",
                        format!("{name} must be {allowed}"),
                    ));
                    None
                }
            },
        }
    }

    /// A date `YYYY-MM-DD` that is not before `earliest` (a lead time of the market rules;
    /// `why` names it in the error).
    pub fn date_with_lead(
        &mut self,
        name: &str,
        earliest: NaiveDate,
        why: &str,
    ) -> Option<NaiveDate> {
        let date: NaiveDate = self.parsed(name, false)?;
        if date < earliest {
            self.errors.push(FieldError::new(
                name,
                "lead_time",
                format!("{name} {date} is earlier than {earliest}, the earliest allowed: {why}"),
            ));
            return None;
        }
        // An order's date lies within a few years (a date format 303 holds four-digit years,
        // and no process orders a change decades ahead): at most 10 years after `earliest`.
        let latest = earliest
            .checked_add_months(chrono::Months::new(12 * MAX_YEARS_AHEAD))
            .unwrap_or(earliest);
        if date > latest {
            self.errors.push(FieldError::new(
                name,
                "out_of_range",
                format!(
                    "{name} {date} is later than {latest}: at most {MAX_YEARS_AHEAD} years ahead"
                ),
            ));
            return None;
        }
        Some(date)
    }

    /// Ok if no problem was found.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(self.errors))
        }
    }
}

/// A list request's query: `limit`, `cursor` and `filter[<name>][<operator>]` for the allowed
/// names and operators.
#[derive(Debug, Default)]
pub struct ListQuery {
    /// Where the page starts and its length.
    pub page: PageRequest,
    /// `(name, operator, value)` of the given filters.
    pub filters: Vec<(String, String, String)>,
}

impl ListQuery {
    /// Reads the query pairs with `filter[<name>][eq]` for each name of `filters`; unknown
    /// parameters, repeated ones and bad limits are errors.
    pub fn parse(pairs: &[(String, String)], filters: &[&str]) -> Result<ListQuery, ApiError> {
        let with_eq: Vec<(&str, &str)> = filters.iter().map(|name| (*name, "eq")).collect();
        ListQuery::parse_with_operators(pairs, &with_eq)
    }

    /// Reads the query pairs with `filter[<name>][<operator>]` for each `(name, operator)` of
    /// `filters` (`("time", "gte")`); unknown parameters, repeated ones and bad limits are
    /// errors.
    pub fn parse_with_operators(
        pairs: &[(String, String)],
        filters: &[(&str, &str)],
    ) -> Result<ListQuery, ApiError> {
        let mut errors = Vec::new();
        let mut out = ListQuery {
            page: PageRequest {
                cursor: None,
                limit: DEFAULT_LIMIT,
            },
            filters: Vec::new(),
        };
        let mut seen: Vec<&str> = Vec::new();
        for (key, value) in pairs {
            if seen.contains(&key.as_str()) {
                errors.push(FieldError::new(
                    key,
                    "repeated",
                    format!("{key} is given more than once"),
                ));
                continue;
            }
            seen.push(key);
            if key == "limit" {
                match value.parse::<u32>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => out.page.limit = n,
                    _ => errors.push(FieldError::new(
                        "limit",
                        "invalid",
                        format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                    )),
                }
            } else if key == "cursor" {
                if value.is_empty() {
                    errors.push(FieldError::new(
                        "cursor",
                        "invalid",
                        "cursor must not be empty",
                    ));
                } else if !is_cursor(value) {
                    errors.push(FieldError::new(
                        "cursor",
                        "invalid",
                        "cursor must be the next_cursor of a previous page",
                    ));
                } else {
                    out.page.cursor = Some(value.clone());
                }
            } else if let Some((name, operator)) = key
                .strip_prefix("filter[")
                .and_then(|k| k.strip_suffix(']'))
                .and_then(|k| k.split_once("]["))
                .filter(|known| filters.contains(known))
            {
                out.filters
                    .push((name.to_string(), operator.to_string(), value.clone()));
            } else {
                let known = filters
                    .iter()
                    .map(|(name, operator)| format!("filter[{name}][{operator}]"))
                    .collect::<Vec<_>>()
                    .join(", ");
                errors.push(FieldError::new(
                    key,
                    "unknown_parameter",
                    format!("unknown query parameter {key}; known: limit, cursor, {known}"),
                ));
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(ApiError::invalid(errors))
        }
    }

    /// The value of filter `name` with operator `eq`, if given.
    pub fn filter(&self, name: &str) -> Option<&str> {
        self.filter_with(name, "eq")
    }

    /// The value of filter `name` with `operator`, if given.
    pub fn filter_with(&self, name: &str, operator: &str) -> Option<&str> {
        self.filters
            .iter()
            .find(|(n, o, _)| n == name && o == operator)
            .map(|(_, _, v)| v.as_str())
    }
}
