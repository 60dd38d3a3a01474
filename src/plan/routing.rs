//! Where a received business message goes: handled by one of our workflows, forwarded to the
//! supplier core, or refused. The table is data: defaults from what the order logic reads
//! ([`crate::orders::HANDLED_PIDS`]), overridden per PID and, for messages without a PID, per
//! message type (and version) in `[routing]` of the configuration.
//!
//! The gateway is the supplier's endpoint for its market partner ID, so it receives every
//! message type; nothing is refused just because it is not ours: every PID we do not handle
//! is forwarded unless the configuration says otherwise.
//!
//! ```
//! use mako_gateway::plan::routing::{Route, RoutingTable};
//! let table = RoutingTable::default();
//! assert_eq!(table.route("ORDRSP", "1.4c", Some(19133)), Route::Handle);
//! assert_eq!(table.route("MSCONS", "2.4c", Some(13017)), Route::Forward);
//! assert_eq!(table.route("PRICAT", "2.0e", None), Route::Forward);
//! // CONTRL and APERAK are always ours: they acknowledge what we sent.
//! assert_eq!(table.route("APERAK", "2.2", None), Route::Handle);
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::acks::{AperakOwner, ProcessingCheck, ProcessingError};
use crate::edifact::Message;
use crate::grammar::{message_pid, Registry};
use crate::orders::{HANDLED_PIDS, STATUS_REPORT_PIDS};

/// What happens to a received business message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// One of our workflows reads it (an answer to our orders, an acknowledgement).
    Handle,
    /// The supplier core gets it through the forward feed (`GET /messages`).
    Forward,
    /// Answered with a negative APERAK ([`RoutingTable::refuse_code`]) and not forwarded.
    Refuse,
}

impl Route {
    /// The route's name in the configuration and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Handle => "handle",
            Route::Forward => "forward",
            Route::Refuse => "refuse",
        }
    }

    /// Reads `handle`, `forward` or `refuse`.
    pub fn parse(text: &str) -> Option<Route> {
        match text {
            "handle" => Some(Route::Handle),
            "forward" => Some(Route::Forward),
            "refuse" => Some(Route::Refuse),
            _ => None,
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Message types that are never routed: they acknowledge what we sent, and no APERAK
/// answers them (APERAK AHB 1.1 §2.5).
pub const ACKNOWLEDGEMENT_TYPES: [&str; 2] = ["CONTRL", "APERAK"];

/// The APERAK error code of a refused message unless configured otherwise: `Z31`
/// "Geschäftsvorfall wird vom Empfänger zurückgewiesen" (APERAK AHB 1.1, ERC code list).
pub const DEFAULT_REFUSE_CODE: &str = "Z31";

/// The APERAK error codes a refusal may carry: those that judge the whole business case
/// rather than a value in it (APERAK AHB 1.1 ERC list): `Z31` rejected by the recipient, `Z37`
/// the sender may not send it, `Z43` not allowed for an object with this property.
pub const REFUSE_CODES: [&str; 3] = ["Z31", "Z37", "Z43"];

/// Why an override cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingError {
    /// A PID that is not five digits.
    BadPid(String),
    /// A message type that is not six capital letters, or a version with other than letters,
    /// digits and dots.
    BadMessageType(String),
    /// `handle` for a PID or type no workflow of ours reads.
    NotHandled(String),
    /// CONTRL and APERAK cannot be routed.
    Acknowledgement(String),
    /// A refusal code outside [`REFUSE_CODES`].
    BadRefuseCode(String),
}

impl fmt::Display for RoutingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutingError::BadPid(p) => write!(f, "{p:?} is not a PID (five digits)"),
            RoutingError::BadMessageType(t) => write!(
                f,
                "{t:?} is not a message type (six capital letters, optionally `:` and a \
                 version such as 2.4c)"
            ),
            RoutingError::NotHandled(what) => write!(
                f,
                "no workflow of the gateway handles {what} (handled PIDs: {}; on request, for \
                 partner statuses: {}); use forward or refuse",
                HANDLED_PIDS.map(|p| p.to_string()).join(", "),
                STATUS_REPORT_PIDS.map(|p| p.to_string()).join(", ")
            ),
            RoutingError::Acknowledgement(t) => write!(
                f,
                "{t} acknowledges what we sent and is always handled by the gateway"
            ),
            RoutingError::BadRefuseCode(c) => write!(
                f,
                "{c:?} is not a refusal code (one of {})",
                REFUSE_CODES.join(", ")
            ),
        }
    }
}

impl std::error::Error for RoutingError {}

/// The routing table: defaults plus the configured overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingTable {
    /// Per PID.
    pids: BTreeMap<u32, Route>,
    /// Per message type (`MSCONS`) or type and version (`MSCONS:2.4c`), for messages without
    /// a PID.
    types: BTreeMap<String, Route>,
    /// The ERC code of a refusal.
    refuse_code: &'static str,
}

impl Default for RoutingTable {
    fn default() -> RoutingTable {
        RoutingTable {
            pids: HANDLED_PIDS.iter().map(|&p| (p, Route::Handle)).collect(),
            types: BTreeMap::new(),
            refuse_code: DEFAULT_REFUSE_CODE,
        }
    }
}

impl RoutingTable {
    /// The defaults with `pids` and `types` overriding them (keys as written in the
    /// configuration: `"55616"`, `"MSCONS"`, `"MSCONS:2.4c"`), refusals answered with
    /// `refuse_code` (default [`DEFAULT_REFUSE_CODE`]). Every problem is returned, each with
    /// the key it concerns.
    pub fn with_overrides<'a>(
        pids: impl IntoIterator<Item = (&'a str, Route)>,
        types: impl IntoIterator<Item = (&'a str, Route)>,
        refuse_code: Option<&str>,
    ) -> Result<RoutingTable, Vec<(String, RoutingError)>> {
        let mut table = RoutingTable::default();
        let mut errors = Vec::new();
        for (key, route) in pids {
            let pid = match parse_pid(key) {
                Some(pid) => pid,
                None => {
                    errors.push((key.to_string(), RoutingError::BadPid(key.to_string())));
                    continue;
                }
            };
            if route == Route::Handle && !can_handle(pid) {
                errors.push((
                    key.to_string(),
                    RoutingError::NotHandled(format!("PID {pid}")),
                ));
                continue;
            }
            table.pids.insert(pid, route);
        }
        for (key, route) in types {
            let Some((message_type, _version)) = parse_type_key(key) else {
                errors.push((
                    key.to_string(),
                    RoutingError::BadMessageType(key.to_string()),
                ));
                continue;
            };
            if ACKNOWLEDGEMENT_TYPES.contains(&message_type) {
                errors.push((
                    key.to_string(),
                    RoutingError::Acknowledgement(message_type.to_string()),
                ));
                continue;
            }
            if route == Route::Handle {
                // Our workflows are chosen by PID: a type without PID has none.
                errors.push((key.to_string(), RoutingError::NotHandled(key.to_string())));
                continue;
            }
            table.types.insert(key.to_string(), route);
        }
        if let Some(code) = refuse_code {
            match REFUSE_CODES.iter().find(|c| **c == code) {
                Some(c) => table.refuse_code = c,
                None => errors.push((
                    "refuse_code".to_string(),
                    RoutingError::BadRefuseCode(code.to_string()),
                )),
            }
        }
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(errors)
        }
    }

    /// The route of a message of `message_type` in `version` (UNH S009 DE0057, e.g. `2.4c`)
    /// with `pid` (RFF+Z13), if it carries one. A PID decides alone; without one, the type and
    /// version, then the type; else forward.
    pub fn route(&self, message_type: &str, version: &str, pid: Option<u32>) -> Route {
        if ACKNOWLEDGEMENT_TYPES.contains(&message_type) {
            return Route::Handle;
        }
        if let Some(pid) = pid {
            return self.pids.get(&pid).copied().unwrap_or(Route::Forward);
        }
        let typed = |key: &str| self.types.get(key).copied();
        let mut with_version = String::with_capacity(message_type.len() + 1 + version.len());
        with_version.push_str(message_type);
        with_version.push(':');
        with_version.push_str(version);
        typed(&with_version)
            .or_else(|| typed(message_type))
            .unwrap_or(Route::Forward)
    }

    /// The ERC code of a refusal's APERAK.
    pub fn refuse_code(&self) -> &'static str {
        self.refuse_code
    }

    /// Every entry that differs from forwarding (PIDs first), for `replay`, `validate` and the
    /// logs at start.
    pub fn entries(&self) -> Vec<(String, Route)> {
        self.pids
            .iter()
            .map(|(p, r)| (p.to_string(), *r))
            .chain(self.types.iter().map(|(t, r)| (t.clone(), *r)))
            .collect()
    }
}

/// Whether a workflow of ours can read `pid`: the [`HANDLED_PIDS`] (handled by default) and the
/// IFTSTA status reports of [`STATUS_REPORT_PIDS`] (forwarded by default: they answer
/// configuration orders, and mean something for a meter order only through a partner's
/// configured statuses).
pub fn can_handle(pid: u32) -> bool {
    HANDLED_PIDS.contains(&pid) || STATUS_REPORT_PIDS.contains(&pid)
}

/// The route of a received message as the gateway applies it: the table's route, except that a
/// message of a handled PID in a version we hold no grammar for is forwarded (unchecked) to the
/// core: no workflow of ours can read it.
pub fn route_of_message(
    table: &RoutingTable,
    registry: &Registry,
    message: &Message<'_, '_>,
) -> Route {
    let message_type = message.message_type();
    let association = message.unh().value(2, 5);
    let route = table.route(&message_type, &association, message_pid(message));
    if route == Route::Handle
        && !ACKNOWLEDGEMENT_TYPES.contains(&message_type.as_ref())
        && registry.mig(&message_type, &association).is_none()
    {
        return Route::Forward;
    }
    route
}

/// The routing table as the acknowledgement planner's check: a refused message gets the
/// refusal's APERAK error, a forwarded one that passed the gateway's checks gets its APERAK
/// from the supplier core ([`AperakOwner::Core`]).
#[derive(Debug, Clone, Copy)]
pub struct RoutingCheck<'a> {
    /// The table.
    pub table: &'a RoutingTable,
    /// The grammars (a handled PID without grammar is forwarded).
    pub registry: &'a Registry,
}

impl ProcessingCheck for RoutingCheck<'_> {
    fn check(&self, message: &Message<'_, '_>) -> Vec<ProcessingError> {
        if route_of_message(self.table, self.registry, message) != Route::Refuse {
            return Vec::new();
        }
        let what = match message_pid(message) {
            Some(pid) => format!("{} PID {pid}", message.message_type()),
            None => format!("{} {}", message.message_type(), message.version()),
        };
        vec![ProcessingError {
            code: self.table.refuse_code(),
            text: format!("{what} is not received by this market partner"),
            segment: 0,
        }]
    }

    fn aperak_owner(&self, message: &Message<'_, '_>) -> AperakOwner {
        match route_of_message(self.table, self.registry, message) {
            Route::Forward => AperakOwner::Core,
            Route::Handle | Route::Refuse => AperakOwner::Gateway,
        }
    }
}

fn parse_pid(key: &str) -> Option<u32> {
    crate::ids::is_pid(key).then(|| key.parse().ok()).flatten()
}

/// `MSCONS` or `MSCONS:2.4c` → (`MSCONS`, version).
fn parse_type_key(key: &str) -> Option<(&str, Option<&str>)> {
    let (message_type, version) = match key.split_once(':') {
        Some((t, v)) => (t, Some(v)),
        None => (key, None),
    };
    let type_ok = message_type.len() == 6 && message_type.bytes().all(|b| b.is_ascii_uppercase());
    let version_ok = version.is_none_or(|v| {
        !v.is_empty() && v.len() <= 8 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
    });
    (type_ok && version_ok).then_some((message_type, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_pids_are_handled_and_every_other_is_forwarded() {
        let table = RoutingTable::default();
        for pid in HANDLED_PIDS {
            assert_eq!(table.route("X", "1", Some(pid)), Route::Handle, "{pid}");
        }
        for pid in [13017, 55001, 55616, 31002, 33001] {
            assert_eq!(table.route("UTILMD", "S2.2", Some(pid)), Route::Forward);
        }
        assert_eq!(table.route("CONTRL", "2.0b", None), Route::Handle);
    }

    /// Issue 14: IFTSTA 21039/21043/21044/21047 and UTILMD 55620 were handled, but no workflow
    /// of ours reads them (21043/21044 answer configuration orders, 21039 Sperr orders, 21047
    /// names a UTILMD Vorgangsnummer, 55620 carries only the MSB assignment): a real one was
    /// swallowed or parked in clearing instead of reaching the core. 21043/21044 can be handled
    /// on request, for a partner's configured statuses.
    #[test]
    fn regression_status_reports_and_55620_go_to_the_core_by_default() {
        let table = RoutingTable::default();
        for pid in [21039, 21043, 21044, 21047, 55620] {
            assert_eq!(table.route("X", "1", Some(pid)), Route::Forward, "{pid}");
        }
        for pid in [55653, 21025] {
            assert_eq!(table.route("X", "1", Some(pid)), Route::Handle, "{pid}");
        }
        let table = RoutingTable::with_overrides([("21043", Route::Handle)], [], None).unwrap();
        assert_eq!(table.route("IFTSTA", "2.1", Some(21043)), Route::Handle);
        assert!(RoutingTable::with_overrides([("21047", Route::Handle)], [], None).is_err());
    }

    #[test]
    fn overrides_by_pid_type_and_version() {
        let table = RoutingTable::with_overrides(
            [("55616", Route::Refuse), ("19133", Route::Forward)],
            [("PRICAT", Route::Refuse), ("REMADV:2.9e", Route::Refuse)],
            Some("Z37"),
        )
        .unwrap();
        assert_eq!(table.route("UTILMD", "S2.2", Some(55616)), Route::Refuse);
        assert_eq!(table.route("ORDRSP", "1.4c", Some(19133)), Route::Forward);
        assert_eq!(table.route("PRICAT", "2.0e", None), Route::Refuse);
        assert_eq!(table.route("REMADV", "2.9e", None), Route::Refuse);
        assert_eq!(table.route("REMADV", "2.9d", None), Route::Forward);
        // A PID decides alone, even where the type has an entry.
        assert_eq!(table.route("PRICAT", "2.0e", Some(27001)), Route::Forward);
        assert_eq!(table.refuse_code(), "Z37");
    }

    #[test]
    fn every_bad_override_is_reported_with_its_key() {
        let errors = RoutingTable::with_overrides(
            [("5561", Route::Forward), ("13017", Route::Handle)],
            [
                ("mscons", Route::Forward),
                ("APERAK", Route::Forward),
                ("MSCONS", Route::Handle),
                ("MSCONS:2/4", Route::Forward),
            ],
            Some("Z99"),
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "5561",
                "13017",
                "mscons",
                "APERAK",
                "MSCONS",
                "MSCONS:2/4",
                "refuse_code"
            ]
        );
        assert!(errors[1].1.to_string().contains("no workflow"));
    }
}
