//! What every topic of the store shares: time and row conversions, the paged list, and the two
//! statements of leased work (claiming the next item, finishing a claimed one).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::error::StoreError;
use super::types::PageRequest;
use super::Backend;

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(crate) fn get<'r, T>(row: &'r AnyRow, column: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column).map_err(|source| StoreError::Query {
        operation: "reading a column",
        source,
    })
}

pub(crate) fn corrupt(
    what: &'static str,
    id: &str,
    column: &'static str,
    detail: String,
) -> StoreError {
    StoreError::Corrupt {
        what,
        id: id.to_string(),
        column,
        detail,
    }
}

pub(crate) fn json_list(list: &[String]) -> String {
    serde_json::to_string(list).expect("a list of strings serialises")
}

pub(crate) fn read_list(
    what: &'static str,
    id: &str,
    column: &'static str,
    text: &str,
) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what, id, column, e.to_string()))
}

pub(crate) fn read_date(
    what: &'static str,
    id: &str,
    column: &'static str,
    text: Option<String>,
) -> Result<Option<NaiveDate>, StoreError> {
    text.map(|t| {
        t.parse::<NaiveDate>()
            .map_err(|e| corrupt(what, id, column, format!("{t:?}: {e}")))
    })
    .transpose()
}

/// Rows per multi-row statement (and values per `IN` list): 500 rows of up to 18 columns are
/// 9,000 bound values, under SQLite's limit of 32,766 variables per statement
/// (`SQLITE_MAX_VARIABLE_NUMBER` since 3.32) and PostgreSQL's 65,535 parameters. A larger list
/// is written in several statements of one transaction: one interchange of 27,205 MSCONS
/// messages once made a single `INSERT` of its webhook events fail with "too many SQL
/// variables", and the interchange was retried for ever.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// `$first, $first+1, …`: `count` placeholders (an `IN (…)` list, one row of `VALUES`).
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, …), ($k, …), …`: `rows` rows of `columns` placeholders each, numbered from 1.
pub(crate) fn value_rows(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(1 + r * columns, columns)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The statement with numbered placeholders (`$1`, `$2`, …, as every statement of the store is
/// written) as `backend` binds them fastest. On SQLite a numbered placeholder is a named
/// parameter, and binding looks each one up by name in a list of all of them
/// (`sqlite3_bind_parameter_name`, which sqlx calls per parameter): quadratic in the number of
/// parameters. A multi-row `INSERT` of 500 received messages has 9,000; the 27,205 messages of
/// one interchange spent 59 % of the daemon's CPU there (`perf`, `cargo bench --bench memory`),
/// holding SQLite's write lock for seconds. Plain `?` placeholders are bound in order without
/// a lookup: on SQLite a statement whose placeholders are `$1` … `$n` in this order, each once
/// (outside quoted text), gets `?` for each; any other statement, and every statement for
/// PostgreSQL, is returned unchanged.
pub(crate) fn positional(backend: Backend, statement: String) -> String {
    if backend != Backend::Sqlite {
        return statement;
    }
    let bytes = statement.as_bytes();
    let mut out = String::with_capacity(statement.len());
    let (mut expected, mut quoted, mut copied) = (1usize, false, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => quoted = !quoted,
            b'$' if !quoted => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if digits > 0 {
                    let number = statement[i + 1..i + 1 + digits].parse::<usize>().ok();
                    if number != Some(expected) {
                        return statement;
                    }
                    out.push_str(&statement[copied..i]);
                    out.push('?');
                    expected += 1;
                    i += 1 + digits;
                    copied = i;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&statement[copied..]);
    out
}

/// Runs a statement with string arguments and returns its rows.
pub(crate) async fn select_rows(
    conn: &mut AnyConnection,
    operation: &'static str,
    sql: &str,
    args: &[&str],
) -> Result<Vec<AnyRow>, StoreError> {
    let mut query = sqlx::query(sql);
    for a in args {
        query = query.bind(a.to_string());
    }
    query
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::query(operation))
}

/// A page of `table` in id order: rows meeting the fixed `condition` and the given filters
/// (`("status =", Some(value))`).
pub(crate) async fn page_rows(
    conn: &mut AnyConnection,
    operation: &'static str,
    table: &'static str,
    columns: &str,
    condition: &'static str,
    filters: &[(&'static str, Option<&str>)],
    page: &PageRequest,
) -> Result<(Vec<AnyRow>, Option<String>), StoreError> {
    let filters: Vec<ListFilter<'_>> = filters
        .iter()
        .filter_map(|(condition, value)| {
            value.map(|v| ListFilter::text(&format!("{condition} $?"), v))
        })
        .collect();
    page_rows_where(conn, operation, table, columns, condition, &filters, page).await
}

/// The value a list filter compares with, bound as a parameter (never written into the SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterValue<'a> {
    /// A text column or JSON list element.
    Text(&'a str),
    /// A time column (unix milliseconds).
    Millis(i64),
}

/// One condition of a list query: SQL with one `$?` where the value's placeholder goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListFilter<'a> {
    /// `state = $?`, `received_at >= $?`, ….
    pub condition: String,
    /// The value bound for `$?`.
    pub value: FilterValue<'a>,
}

impl<'a> ListFilter<'a> {
    /// `condition` compared with a text.
    pub fn text(condition: &str, value: &'a str) -> ListFilter<'a> {
        ListFilter {
            condition: condition.to_string(),
            value: FilterValue::Text(value),
        }
    }

    /// `condition` compared with a time.
    pub fn time(condition: &str, at: DateTime<Utc>) -> ListFilter<'a> {
        ListFilter {
            condition: condition.to_string(),
            value: FilterValue::Millis(ms(at)),
        }
    }
}

/// A page of `table` in id order: rows meeting the fixed `condition` and every filter, each
/// filter's value bound as the next parameter.
pub(crate) async fn page_rows_where(
    conn: &mut AnyConnection,
    operation: &'static str,
    table: &'static str,
    columns: &str,
    condition: &'static str,
    filters: &[ListFilter<'_>],
    page: &PageRequest,
) -> Result<(Vec<AnyRow>, Option<String>), StoreError> {
    let mut sql = format!("SELECT {columns} FROM {table} WHERE {condition}");
    let mut values: Vec<FilterValue<'_>> = Vec::new();
    for filter in filters {
        values.push(filter.value);
        let placeholder = format!("${}", values.len());
        sql.push_str(" AND ");
        sql.push_str(&filter.condition.replace("$?", &placeholder));
    }
    if let Some(c) = &page.cursor {
        values.push(FilterValue::Text(c));
        sql.push_str(&format!(" AND id > ${}", values.len()));
    }
    let limit = page.limit.max(1);
    sql.push_str(&format!(" ORDER BY id LIMIT {}", u64::from(limit) + 1));
    let mut query = sqlx::query(&sql);
    for value in values {
        query = match value {
            FilterValue::Text(text) => query.bind(text.to_string()),
            FilterValue::Millis(at) => query.bind(at),
        };
    }
    let mut rows = query
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::query(operation))?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| get::<String>(r, "id")).transpose()?
    } else {
        None
    };
    Ok((rows, next))
}

/// `Ok` when exactly one row was changed, else the worker's lease on the item is gone.
pub(crate) fn lease_kept(
    rows: u64,
    what: &'static str,
    id: &str,
    worker: &str,
) -> Result<(), StoreError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::LeaseLost {
            what,
            id: id.to_string(),
            worker: worker.to_string(),
        })
    }
}

/// The statement of a work queue to claim from, shared by the journal, the outbox and the
/// webhook deliveries.
pub(crate) struct Queue {
    /// What the claim is, for errors (`claiming an outbox item`).
    pub operation: &'static str,
    /// The table.
    pub table: &'static str,
    /// The state of a claimed item.
    pub busy_state: &'static str,
    /// The two ways an item is ready: new work, and work whose lease ran out (`$3` is now).
    pub ready: [&'static str; 2],
    /// The columns returned.
    pub columns: &'static str,
}

/// Claims the oldest ready item of `queue` for `worker` until `now + lease`.
///
/// Each way of being ready is its own `ORDER BY id LIMIT 1` (one index probe of the work
/// index) and the older of the two is taken. One condition `new OR expired` would make both
/// databases collect and sort every waiting item on every claim: with a backlog of 10,000
/// inbound items that made claiming the whole backlog quadratic (the inbound benchmark fell
/// from about 500 to 60 items/s). PostgreSQL allows row locks in CTEs but not in the branches
/// of a UNION, hence the two CTEs; the row of the branch not taken stays locked only until this
/// one-statement transaction ends.
pub(crate) async fn claim_next(
    conn: &mut AnyConnection,
    backend: Backend,
    queue: &Queue,
    worker: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
) -> Result<Option<AnyRow>, StoreError> {
    let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    let lock = backend.skip_locked();
    let Queue {
        operation,
        table,
        busy_state,
        ready: [new, expired],
        columns,
    } = queue;
    let statement = format!(
        "WITH new AS (SELECT id FROM {table} WHERE {new} ORDER BY id LIMIT 1{lock}), \
         expired AS (SELECT id FROM {table} WHERE {expired} ORDER BY id LIMIT 1{lock}) \
         UPDATE {table} SET state = '{busy_state}', locked_by = $1, locked_until = $2, \
         attempts = attempts + 1 \
         WHERE id = (SELECT MIN(id) FROM (SELECT id FROM new UNION ALL SELECT id FROM expired) AS ready) \
         RETURNING {columns}"
    );
    sqlx::query(&statement)
        .bind(worker)
        .bind(ms(until))
        .bind(ms(now))
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::query(operation))
}

/// Ends a claimed item of `table`: `set` may use `$3` (a time) and `$4` (a text).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn finish_work(
    conn: &mut AnyConnection,
    table: &'static str,
    what: &'static str,
    busy_state: &'static str,
    set: &'static str,
    id: &str,
    worker: &str,
    at: Option<i64>,
    text: Option<&str>,
) -> Result<(), StoreError> {
    let statement = format!(
        "UPDATE {table} SET {set}, locked_by = NULL, locked_until = NULL \
         WHERE id = $1 AND locked_by = $2 AND state = '{busy_state}'"
    );
    let done = sqlx::query(&statement)
        .bind(id)
        .bind(worker)
        .bind(at.unwrap_or_default())
        .bind(text.unwrap_or_default().to_string())
        .execute(&mut *conn)
        .await
        .map_err(StoreError::query("finishing claimed work"))?;
    lease_kept(done.rows_affected(), what, id, worker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_placeholders_in_order_become_positional_on_sqlite_only() {
        let insert = format!("INSERT INTO t (a, b) VALUES {}", value_rows(3, 2));
        assert_eq!(
            positional(Backend::Sqlite, insert.clone()),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?)"
        );
        assert_eq!(positional(Backend::Postgres, insert.clone()), insert);
        // Ten and more: the whole number is one placeholder.
        let many = format!("SELECT 1 WHERE a IN ({})", placeholders(1, 12));
        assert_eq!(
            positional(Backend::Sqlite, many),
            format!("SELECT 1 WHERE a IN ({})", ["?"; 12].join(", "))
        );
    }

    #[test]
    fn statements_that_are_not_in_order_stay_numbered() {
        for statement in [
            // Used twice: `?` would need the value bound twice.
            "UPDATE t SET a = $1, b = $2 WHERE a = $1",
            // Out of order, or not from 1.
            "SELECT $2, $1",
            "SELECT $2",
            "SELECT 1 WHERE a = $1 AND b = $3",
        ] {
            assert_eq!(
                positional(Backend::Sqlite, statement.to_string()),
                statement
            );
        }
    }

    #[test]
    fn quoted_text_and_dollar_signs_without_digits_are_left_alone() {
        assert_eq!(
            positional(
                Backend::Sqlite,
                "SELECT json_extract(p, '$.a'), '$1' || $1 WHERE b = $2".to_string()
            ),
            "SELECT json_extract(p, '$.a'), '$1' || ? WHERE b = ?"
        );
    }
}
