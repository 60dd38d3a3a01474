//! The parsers of single option values: text in, the value or the reason it is refused out.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::ids::MarketPartnerId;

use super::{DatabaseKind, MIN_SECRET_LEN};

pub(super) fn parse_market_partner_id(s: &str) -> Result<MarketPartnerId, String> {
    s.parse::<MarketPartnerId>()
        .map_err(|e| e.problem.to_string())
}

pub(super) fn parse_mail_address(s: &str) -> Result<String, String> {
    s.parse::<lettre::Address>()
        .map(|a| a.to_string())
        .map_err(|e| format!("not a mail address such as gateway@example.org: {e}"))
}

pub(super) fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.trim().is_empty() {
        Err("must name a file".into())
    } else {
        Ok(PathBuf::from(s))
    }
}

pub(super) fn parse_non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_string())
    }
}

pub(super) fn parse_host(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '/' || c == '@') {
        Err("must be a host name or IP address, such as mail.example.org".into())
    } else {
        Ok(s.to_string())
    }
}

pub(super) fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        "not an IP address with a port, such as 127.0.0.1:8080 or [::1]:8080 \
         (host names are not resolved)"
            .to_string()
    })
}

pub(super) fn parse_secret(s: &str) -> Result<String, String> {
    if s.chars().count() < MIN_SECRET_LEN {
        Err(format!("must have at least {MIN_SECRET_LEN} characters"))
    } else if s.chars().any(char::is_whitespace) {
        Err("must not contain whitespace".to_string())
    } else {
        Ok(s.to_string())
    }
}

/// Accepts `sqlite://PATH[?options]`, `postgres://…` and `postgresql://…` (sqlx's forms).
pub(super) fn parse_database_url(s: &str) -> Result<(String, DatabaseKind), String> {
    let supported = "only sqlite://PATH, postgres://… and postgresql://… URLs are supported";
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(supported.to_string());
    };
    match scheme {
        "sqlite" => {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() {
                Err("sqlite:// needs a file path, such as sqlite://data/mako-gateway.db".into())
            } else {
                Ok((s.to_string(), DatabaseKind::Sqlite))
            }
        }
        "postgres" | "postgresql" => {
            let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
            let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let (host, port) = split_host_port(host_port);
            if host.is_empty() && !rest.contains("host=") {
                return Err("needs a host, such as postgres://user:password@localhost/mako".into());
            }
            if let Some(port) = port {
                if port.parse::<u16>().is_err() {
                    return Err(format!("port {port:?} is not a number from 0 to 65535"));
                }
            }
            Ok((s.to_string(), DatabaseKind::Postgres))
        }
        _ => Err(supported.to_string()),
    }
}

/// Splits `host:port`, `[v6]:port` or `host`.
pub(super) fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    }
}

/// Accepts only `https://host…` (BDEW AS4 endpoints are HTTPS; phase4's BDEW validator refuses
/// `http`, transport.md §1.2).
pub(super) fn parse_https_url(s: &str) -> Result<String, String> {
    if !s.starts_with("https://") {
        return Err("must be an https:// URL (the BDEW AS4 profile allows no plain HTTP)".into());
    }
    parse_http_url(s)
}

/// Accepts `http://host…` and `https://host…`.
pub(super) fn parse_http_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or("must be an http:// or https:// URL")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = split_host_port(host_port);
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err("needs a host, such as https://core.example/mako-events".into());
    }
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err(format!("port {port:?} is not a number from 0 to 65535"));
        }
    }
    Ok(s.to_string())
}

/// `500ms`, `5s`, `10m`, `1h`, `7d`: a whole number and one unit.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let help =
        "a duration is a whole number and a unit: \"500ms\", \"5s\", \"10m\", \"1h\" or \"7d\"";
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    let n: u64 = number.parse().map_err(|_| help.to_string())?;
    let seconds_per = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(help.to_string()),
    };
    n.checked_mul(seconds_per)
        .map(Duration::from_secs)
        .ok_or_else(|| "too long".to_string())
}

/// A tracing filter: comma-separated directives `LEVEL`, `TARGET` or `TARGET=LEVEL`. Span
/// filters (`target[span{field=value}]=level`) are passed on unchecked; tracing-subscriber
/// parses the filter again when `serve` starts logging.
pub(super) fn parse_log_filter(s: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if s.trim().is_empty() {
        return Err("must not be empty (for example \"info\")".into());
    }
    for directive in s.split(',').map(str::trim) {
        if directive.contains('[') {
            continue;
        }
        let is_target = |t: &str| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_:-".contains(c))
        };
        let ok = match directive.rsplit_once('=') {
            Some((target, level)) => {
                is_target(target) && LEVELS.contains(&level.to_ascii_lowercase().as_str())
            }
            None => is_target(directive),
        };
        if !ok {
            return Err(format!(
                "directive {directive:?} is not LEVEL, TARGET or TARGET=LEVEL \
                 (levels: {})",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::load;

    #[test]
    fn durations_take_a_number_and_a_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["5", "s", "1.5s", "-1s", "5 s", "1w", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let c = load("[workers]\nlease = \"2m\"\n[retry]\nbase = \"1s\"\nmax = \"1s\"").unwrap();
        assert_eq!(c.workers.lease, Duration::from_secs(120));
        assert_eq!(c.retry.max, Duration::from_secs(1));
    }
}
