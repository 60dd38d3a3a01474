//! `[routing]`: where received messages go (handle / forward / refuse) per PID and, for
//! messages without a PID, per message type (and version). See [`crate::plan::routing`].

use toml::{Table, Value};

use super::error::Problem;
use super::reader::{join, render_value, Reader};
use crate::plan::routing::{Route, RoutingTable};

impl Reader<'_> {
    /// `[routing]`: `pids = { "55616" = "refuse" }`, `types = { "PRICAT" = "forward" }`,
    /// `refuse_code = "Z31"`.
    pub(super) fn routing(&mut self, root: &mut Table) -> RoutingTable {
        let mut t = self.table(root, "", "routing");
        let pids = self.routes(&mut t, "pids");
        let types = self.routes(&mut t, "types");
        let refuse_code = self.string(&mut t, "routing", "refuse_code");
        self.unknown_keys(t, "routing", &["pids", "types", "refuse_code"]);
        let table = RoutingTable::with_overrides(
            pids.iter().map(|(k, r)| (k.as_str(), *r)),
            types.iter().map(|(k, r)| (k.as_str(), *r)),
            refuse_code.as_deref(),
        );
        match table {
            Ok(table) => table,
            Err(errors) => {
                for (key, error) in errors {
                    let (path, value) = if key == "refuse_code" {
                        ("routing.refuse_code".to_string(), refuse_code.clone())
                    } else if pids.iter().any(|(k, _)| *k == key) {
                        (
                            format!("routing.pids.{key}"),
                            pids.iter()
                                .find(|(k, _)| *k == key)
                                .map(|(_, r)| r.to_string()),
                        )
                    } else {
                        (
                            format!("routing.types.{key}"),
                            types
                                .iter()
                                .find(|(k, _)| *k == key)
                                .map(|(_, r)| r.to_string()),
                        )
                    };
                    self.push(
                        path,
                        value.map(|v| format!("{v:?}")),
                        Problem::Invalid {
                            reason: error.to_string(),
                        },
                    );
                }
                RoutingTable::default()
            }
        }
    }

    /// The `key` table of `[routing]`: keys to `handle`, `forward` or `refuse`.
    fn routes(&mut self, table: &mut Table, key: &str) -> Vec<(String, Route)> {
        let prefix = join("routing", key);
        let entries = self.table(table, "routing", key);
        let mut out = Vec::new();
        for (name, value) in entries {
            match &value {
                Value::String(s) => match Route::parse(s) {
                    Some(route) => out.push((name, route)),
                    None => self.push(
                        join(&prefix, &name),
                        Some(render_value(&value)),
                        Problem::Invalid {
                            reason: "must be \"handle\", \"forward\" or \"refuse\"".to_string(),
                        },
                    ),
                },
                other => self.wrong_type(join(&prefix, &name), other, "a string"),
            }
        }
        out
    }
}
