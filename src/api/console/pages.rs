//! The console's pages as HTML, from data (pure: no store, no clock, no request). Every value
//! goes through maud's escaping; partner texts (free text, contact names, mail subjects, error
//! texts of partners) are shown as text, never as markup. No inline script or style: the
//! stylesheet and the one small script are files under `/ui/static/`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use crate::orders::{GridFeeStatus, MeterStatus};
use crate::store::{
    serde_text, As4Request, AuditEntry, ClearingItem, ConsoleCounts, Counts, GridFeeRecord,
    HistoryEntry, JournalEntry, JournalItem, MeterOrderRecord, OutboxItem, Page, ParkedItem,
    QuarantineItem, StoredDeadline, StoredMessage,
};
use crate::transport::health::{Snapshot, Status};

/// Days before a certificate's expiry from which the console warns.
pub const CERT_WARNING_DAYS: i64 = 30;

/// What every page around its content shows: who is logged in, the CSRF token of the forms.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The operator's name.
    pub operator: &'a str,
    /// The session's CSRF token.
    pub csrf: &'a str,
}

/// An English label with the German term operators know, e.g. "Rejection (Ablehnung)".
fn term(en: &str, de: &str) -> Markup {
    html! { (en) " " span class="de" lang="de" { "(" (de) ")" } }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn when_opt(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "—".to_string(), when)
}

fn naive(t: Option<NaiveDateTime>) -> String {
    t.map_or_else(
        || "—".to_string(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

fn date(d: Option<NaiveDate>) -> String {
    d.map_or_else(|| "—".to_string(), |d| d.to_string())
}

/// German name of a reduction's status.
pub fn grid_status_de(s: GridFeeStatus) -> &'static str {
    match s {
        GridFeeStatus::Intended => "beabsichtigt",
        GridFeeStatus::Ordered => "bestellt",
        GridFeeStatus::Activated => "aktiviert",
        GridFeeStatus::Rejected => "abgelehnt",
        GridFeeStatus::Ended => "beendet",
    }
}

/// German name of a meter order's status.
pub fn meter_status_de(s: MeterStatus) -> &'static str {
    match s {
        MeterStatus::Created => "angelegt",
        MeterStatus::Placed => "beauftragt",
        MeterStatus::CheckSubmitted => "Prüfung eingereicht",
        MeterStatus::CheckReviewed => "Prüfung bestätigt",
        MeterStatus::Scheduled => "terminiert",
        MeterStatus::Installed => "eingebaut",
        MeterStatus::Activated => "aktiviert",
        MeterStatus::Cancelled => "storniert",
    }
}

/// All statuses of a reduction, in lifecycle order.
pub const GRID_STATUSES: [GridFeeStatus; 5] = [
    GridFeeStatus::Intended,
    GridFeeStatus::Ordered,
    GridFeeStatus::Activated,
    GridFeeStatus::Rejected,
    GridFeeStatus::Ended,
];

/// All statuses of a meter order, in lifecycle order.
pub const METER_STATUSES: [MeterStatus; 8] = [
    MeterStatus::Created,
    MeterStatus::Placed,
    MeterStatus::CheckSubmitted,
    MeterStatus::CheckReviewed,
    MeterStatus::Scheduled,
    MeterStatus::Installed,
    MeterStatus::Activated,
    MeterStatus::Cancelled,
];

/// A query string from pairs (values percent-encoded).
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    let q = s.finish();
    if q.is_empty() {
        q
    } else {
        format!("?{q}")
    }
}

/// The whole document around a page's content.
pub fn layout(frame: Option<&Frame<'_>>, title: &str, refresh: bool, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · mako-gateway console" }
                link rel="stylesheet" href="/ui/static/console.css";
                script src="/ui/static/console.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    span class="brand" { "mako-gateway" }
                    @if let Some(f) = frame {
                        nav aria-label="Console" {
                            ul {
                                li { a href="/ui" { "Overview" } }
                                li { a href="/ui/grid-fee-reductions" { (term("Grid-fee reductions", "§14a-Netzentgeltreduzierung")) } }
                                li { a href="/ui/meter-orders" { (term("Meter orders", "iMSys-Einbau")) } }
                                li { a href="/ui/journal" { "Journal" } }
                                li { a href="/ui/messages" { (term("Forwarded", "weitergeleitet")) } }
                                li { a href="/ui/clearing" { (term("Clearing", "Klärfälle")) } }
                                li { a href="/ui/outbox" { "Outbox" } }
                                li { a href="/ui/quarantine" { "Quarantine" } }
                                li { a href="/ui/as4" { "AS4" } }
                                li { a href="/ui/health" { "Health" } }
                                li { a href="/ui/audit" { "Audit" } }
                            }
                        }
                        form class="logout" method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(f.csrf);
                            span { "Signed in as " strong { (f.operator) } }
                            " "
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main id="main" data-refresh=[refresh.then_some("30")] {
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
}

/// The login form (posts the API token or the console token, and a name for the audit).
pub fn login(error: Option<&str>) -> Markup {
    layout(
        None,
        "Log in",
        false,
        html! {
            @if let Some(e) = error { p class="error" role="alert" { (e) } }
            form method="post" action="/ui/login" class="login" {
                p {
                    label for="name" { "Your name (kept in the audit trail with each action)" }
                    input id="name" name="name" type="text" required maxlength="80" autocomplete="name";
                }
                p {
                    label for="token" { "Token (the API token or the console token)" }
                    input id="token" name="token" type="password" required autocomplete="current-password";
                }
                p { button type="submit" { "Log in" } }
            }
        },
    )
}

/// An error as a page.
pub fn error(frame: Option<&Frame<'_>>, status: u16, messages: &[String]) -> Markup {
    layout(
        frame,
        &format!("Error {status}"),
        false,
        html! {
            ul class="error" role="alert" {
                @for m in messages { li { (m) } }
            }
            p { a href="/ui" { "Back to the overview" } }
        },
    )
}

/// A hidden CSRF field and a button: one action.
fn action(frame: &Frame<'_>, url: &str, label: &str, note: Option<&str>) -> Markup {
    html! {
        form method="post" action=(url) class="action" {
            input type="hidden" name="csrf" value=(frame.csrf);
            @if let Some(id) = note {
                label for=(id) { "Note" }
                input id=(id) name="note" type="text" maxlength="500";
            }
            button type="submit" { (label) }
        }
    }
}

fn count_of(list: &[(String, i64)], label: &str) -> i64 {
    list.iter().find(|(l, _)| l == label).map_or(0, |(_, n)| *n)
}

/// A certificate whose expiry the console watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Whose and what for (`own e-mail signing`, `partner 99… e-mail`).
    pub owner: String,
    /// Its subject.
    pub subject: String,
    /// Valid until.
    pub not_after: DateTime<Utc>,
}

/// What the overview shows.
#[derive(Debug, Clone)]
pub struct Overview<'a> {
    /// Rows by status and state.
    pub counts: &'a Counts,
    /// The console's own counts.
    pub console: &'a ConsoleCounts,
    /// Forwarded messages the core has not taken.
    pub messages_new: i64,
    /// The transports.
    pub health: &'a Snapshot,
    /// The certificates watched.
    pub certificates: &'a [Certificate],
    /// Now (for the certificate warning).
    pub now: DateTime<Utc>,
}

fn tile(n: i64, url: &str, label: Markup, attention: bool) -> Markup {
    html! {
        li class=(if attention && n > 0 { "tile attention" } else { "tile" }) {
            a href=(url) { span class="n" { (n) } span class="what" { (label) } }
        }
    }
}

/// The overview: counts linking to their lists, then health.
pub fn overview(frame: &Frame<'_>, o: &Overview<'_>) -> Markup {
    layout(
        Some(frame),
        "Overview",
        true,
        html! {
            section aria-labelledby="attention" {
                h2 id="attention" { "Needs attention" }
                ul class="tiles" {
                    (tile(o.console.answers_overdue, "/ui/deadlines", term("Answers overdue", "Antwort überfällig"), true))
                    (tile(o.console.outbox_parked, "/ui/outbox", term("Outbox items parked", "geparkt"), true))
                    (tile(o.console.quarantined_mails, "/ui/quarantine", term("Mails in quarantine", "Quarantäne"), true))
                    (tile(o.counts.clearing_open, "/ui/clearing", term("Clearing entries open", "offene Klärfälle"), true))
                    (tile(o.console.as4_refused, "/ui/as4", term("AS4 requests refused", "abgewiesen"), true))
                    (tile(o.messages_new, "/ui/messages", term("Forwarded, not taken by the core", "nicht abgeholt"), true))
                }
            }
            section aria-labelledby="grid" {
                h2 id="grid" { (term("Grid-fee reductions", "§14a-Netzentgeltreduzierung")) }
                ul class="tiles" {
                    @for s in GRID_STATUSES {
                        (tile(count_of(&o.counts.grid_fee_reductions, &serde_text(&s)),
                              &format!("/ui/grid-fee-reductions{}", query(&[("status", &serde_text(&s))])),
                              term(&serde_text(&s), grid_status_de(s)),
                              s == GridFeeStatus::Rejected))
                    }
                }
            }
            section aria-labelledby="meter" {
                h2 id="meter" { (term("Meter orders", "iMSys-Einbau")) }
                ul class="tiles" {
                    @for s in METER_STATUSES {
                        (tile(count_of(&o.counts.meter_orders, &serde_text(&s)),
                              &format!("/ui/meter-orders{}", query(&[("status", &serde_text(&s))])),
                              term(&serde_text(&s), meter_status_de(s)),
                              false))
                    }
                }
            }
            section aria-labelledby="health" {
                h2 id="health" { "Health" }
                (health_tables(o.health, o.certificates, o.now))
            }
        },
    )
}

fn status_cells(s: &Status) -> Markup {
    let state = s.state();
    html! {
        td class={"state-" (state.label())} { (state.label()) }
        td { (when_opt(s.last_success)) }
        td {
            @if let Some(f) = &s.last_failure { (when(f.at)) ": " (f.reason) } @else { "—" }
        }
        td { (s.failures) }
    }
}

/// The transports, the partners and the certificates.
pub fn health_tables(h: &Snapshot, certificates: &[Certificate], now: DateTime<Utc>) -> Markup {
    html! {
        table {
            caption { "Transports (since this instance started)" }
            thead { tr { th scope="col" { "Transport" } th scope="col" { "State" } th scope="col" { "Last success" } th scope="col" { "Last failure" } th scope="col" { "Failures" } } }
            tbody {
                @for (part, s) in &h.parts {
                    tr { th scope="row" { (part.label()) } (status_cells(s)) }
                }
                @if h.parts.is_empty() { tr { td colspan="5" { "No transport used yet." } } }
            }
        }
        table {
            caption { (term("Partners", "Marktpartner")) }
            thead { tr { th scope="col" { "Partner" } th scope="col" { "Transport" } th scope="col" { "State" } th scope="col" { "Last success" } th scope="col" { "Last failure" } th scope="col" { "Failures" } } }
            tbody {
                @for p in &h.partners {
                    tr { th scope="row" { (p.partner.as_str()) } td { (p.part.label()) } (status_cells(&p.status)) }
                }
                @if h.partners.is_empty() { tr { td colspan="6" { "No exchange with a partner yet." } } }
            }
        }
        table {
            caption { (term("Certificates", "Zertifikate")) " (warning " (CERT_WARNING_DAYS) " days ahead)" }
            thead { tr { th scope="col" { "Whose" } th scope="col" { "Subject" } th scope="col" { "Valid until" } th scope="col" { "State" } } }
            tbody {
                @for c in certificates {
                    @let days = (c.not_after - now).num_days();
                    tr {
                        th scope="row" { (c.owner) }
                        td { (c.subject) }
                        td { (when(c.not_after)) }
                        @if c.not_after <= now {
                            td class="state-down" { "expired" }
                        } @else if days < CERT_WARNING_DAYS {
                            td class="state-warn" { "expires in " (days) " days" }
                        } @else {
                            td class="state-up" { "valid" }
                        }
                    }
                }
                @if certificates.is_empty() { tr { td colspan="4" { "No certificate configured (file drop only)." } } }
            }
        }
    }
}

/// The health page.
pub fn health(
    frame: &Frame<'_>,
    h: &Snapshot,
    certificates: &[Certificate],
    now: DateTime<Utc>,
) -> Markup {
    layout(
        Some(frame),
        "Health",
        true,
        health_tables(h, certificates, now),
    )
}

fn next_link(next: &Option<String>, base: &str, filters: &[(&str, &str)]) -> Markup {
    let href = next.as_deref().map(|c| {
        let mut pairs = filters.to_vec();
        pairs.push(("cursor", c));
        format!("{base}{}", query(&pairs))
    });
    html! {
        @if let Some(h) = href {
            p class="pager" { a href=(h) rel="next" { "Next page →" } }
        }
    }
}

fn status_select(name: &str, selected: Option<&str>, options: &[(String, &str)]) -> Markup {
    html! {
        select id=(name) name=(name) {
            option value="" { "any" }
            @for (value, de) in options {
                option value=(value) selected[selected == Some(value.as_str())] { (value) " (" (de) ")" }
            }
        }
    }
}

/// The filter form of an order list (status and subscription, as the API filters).
fn order_filters(
    action: &str,
    status: Option<&str>,
    subscription: Option<&str>,
    options: &[(String, &str)],
) -> Markup {
    html! {
        form method="get" action=(action) class="filters" {
            label for="status" { "Status" }
            (status_select("status", status, options))
            label for="subscription" { "Subscription" }
            input id="subscription" name="subscription" type="text" value=[subscription];
            button type="submit" { "Filter" }
        }
    }
}

/// The list of grid-fee reductions with the API's filters.
pub fn grid_fee_list(
    frame: &Frame<'_>,
    page: &Page<GridFeeRecord>,
    status: Option<&str>,
    subscription: Option<&str>,
) -> Markup {
    let options: Vec<(String, &str)> = GRID_STATUSES
        .iter()
        .map(|s| (serde_text(s), grid_status_de(*s)))
        .collect();
    layout(
        Some(frame),
        "Grid-fee reductions",
        false,
        html! {
            (order_filters("/ui/grid-fee-reductions", status, subscription, &options))
            table {
                thead { tr {
                    th scope="col" { "Order" } th scope="col" { "Status" } th scope="col" { "Module" }
                    th scope="col" { (term("Market location", "Marktlokation")) }
                    th scope="col" { (term("Grid operator", "Netzbetreiber")) }
                    th scope="col" { "Subscription" } th scope="col" { "Valid from" } th scope="col" { "Updated" }
                } }
                tbody {
                    @for r in &page.items {
                        @let o = &r.order;
                        tr {
                            td { a href={"/ui/grid-fee-reductions/" (o.id)} { (o.id) } }
                            td class={"status-" (serde_text(&o.status))} { (term(&serde_text(&o.status), grid_status_de(o.status))) }
                            td { (serde_text(&o.reduction_type)) }
                            td { (o.market_location.as_str()) }
                            td { (o.grid_operator.as_str()) }
                            td { (o.subscription) }
                            td { (date(o.valid_from)) }
                            td { (when(r.updated_at)) }
                        }
                    }
                    @if page.items.is_empty() { tr { td colspan="8" { "No order matches." } } }
                }
            }
            (next_link(&page.next_cursor, "/ui/grid-fee-reductions", &[("status", status.unwrap_or("")), ("subscription", subscription.unwrap_or(""))]))
        },
    )
}

/// The list of meter orders with the API's filters.
pub fn meter_list(
    frame: &Frame<'_>,
    page: &Page<MeterOrderRecord>,
    status: Option<&str>,
    subscription: Option<&str>,
) -> Markup {
    let options: Vec<(String, &str)> = METER_STATUSES
        .iter()
        .map(|s| (serde_text(s), meter_status_de(*s)))
        .collect();
    layout(
        Some(frame),
        "Meter orders",
        false,
        html! {
            (order_filters("/ui/meter-orders", status, subscription, &options))
            table {
                thead { tr {
                    th scope="col" { "Order" } th scope="col" { "Status" }
                    th scope="col" { (term("Metering location", "Messlokation")) }
                    th scope="col" { (term("Metering operator", "Messstellenbetreiber")) }
                    th scope="col" { "Subscription" } th scope="col" { "Appointment" } th scope="col" { "Updated" }
                } }
                tbody {
                    @for r in &page.items {
                        @let o = &r.order;
                        tr {
                            td { a href={"/ui/meter-orders/" (o.id)} { (o.id) } }
                            td class={"status-" (serde_text(&o.status))} {
                                (term(&serde_text(&o.status), meter_status_de(o.status)))
                                @if o.blocked_at.is_some() { " " strong class="blocked" { "blocked" } }
                            }
                            td { (o.metering_location.as_ref().map_or("—", |m| m.as_str())) }
                            td { (o.metering_operator.as_str()) }
                            td { (o.subscription) }
                            td { (naive(o.appointment_at)) }
                            td { (when(r.updated_at)) }
                        }
                    }
                    @if page.items.is_empty() { tr { td colspan="7" { "No order matches." } } }
                }
            }
            (next_link(&page.next_cursor, "/ui/meter-orders", &[("status", status.unwrap_or("")), ("subscription", subscription.unwrap_or(""))]))
        },
    )
}

/// What an order's detail page shows beside the order.
#[derive(Debug, Clone, Default)]
pub struct OrderContext<'a> {
    /// The status history, oldest first.
    pub history: &'a [HistoryEntry],
    /// The interchanges that went out or came back for it (from the history and its outbox).
    pub exchanged: &'a [JournalEntry],
    /// Its outbox items.
    pub outbox: &'a [OutboxItem],
    /// The answers awaited, with due times.
    pub awaiting: &'a [StoredDeadline],
    /// The contact of the partner's message that rejected or blocked it (CTA/COM).
    pub contact: &'a [String],
    /// The audit trail of the order.
    pub audit: &'a [AuditEntry],
    /// Now (for overdue).
    pub now: Option<DateTime<Utc>>,
}

fn timeline(history: &[HistoryEntry]) -> Markup {
    html! {
        ol class="timeline" aria-label="Status timeline" {
            @for h in history {
                li {
                    span class="when" { (when(h.at)) }
                    " "
                    strong { (h.from.as_deref().unwrap_or("(new)")) " → " (h.to) }
                    @if let Some(j) = &h.journal_id {
                        " · caused by " a href={"/ui/journal/" (j)} { "message " (j) }
                    } @else {
                        " · by a request of the core or an operator"
                    }
                    @if let Some(t) = &h.topic { " · event " code { (t) } }
                }
            }
        }
    }
}

fn context_sections(frame: &Frame<'_>, c: &OrderContext<'_>) -> Markup {
    let _ = frame;
    html! {
        section aria-labelledby="timeline" {
            h2 id="timeline" { "Status timeline" }
            (timeline(c.history))
        }
        section aria-labelledby="exchanged" {
            h2 id="exchanged" { "What went out and came back" }
            (journal_table(c.exchanged))
            @if !c.outbox.is_empty() {
                table {
                    caption { "Outbox items" }
                    thead { tr { th scope="col" { "Item" } th scope="col" { "State" } th scope="col" { "Attempts" } th scope="col" { "Last error" } th scope="col" { "Sent" } } }
                    tbody {
                        @for o in c.outbox {
                            tr { td { (o.id) } td { (o.state.as_str()) } td { (o.attempts) } td { (o.last_error.as_deref().unwrap_or("—")) } td { (when_opt(o.sent_at)) } }
                        }
                    }
                }
            }
            @if !c.awaiting.is_empty() {
                table {
                    caption { "Answers awaited" }
                    thead { tr { th scope="col" { "Awaiting" } th scope="col" { "From" } th scope="col" { "Reference" } th scope="col" { "Due" } th scope="col" { "Met" } } }
                    tbody {
                        @for d in c.awaiting {
                            @let overdue = d.met_at.is_none() && c.now.is_some_and(|n| d.due_at < n);
                            tr class=[overdue.then_some("overdue")] {
                                td { (d.awaiting) } td { (d.partner) } td { (d.reference) } td { (when(d.due_at)) @if overdue { " " strong { "overdue" } } } td { (when_opt(d.met_at)) }
                            }
                        }
                    }
                }
            }
        }
        @if !c.audit.is_empty() {
            section aria-labelledby="audit" {
                h2 id="audit" { "Operator actions" }
                (audit_table(c.audit))
            }
        }
    }
}

fn rejection_block(heading: Markup, r: &crate::orders::Rejection, contact: &[String]) -> Markup {
    html! {
        section class="rejection" aria-labelledby="rejection" {
            h2 id="rejection" { (heading) }
            dl {
                dt { "Code" } dd { code { (r.code) } }
                dt lang="de" { "Grund" } dd lang="de" { (r.meaning_de) }
                dt { "Reason" } dd { (r.meaning_en) }
                dt { "Partner's text" } dd class="partner-text" { (r.text.as_deref().unwrap_or("—")) }
                dt { "Message" } dd { (r.message_reference.as_deref().unwrap_or("—")) }
                dt { (term("Contact for clearing", "Ansprechpartner")) }
                dd {
                    @if contact.is_empty() { "none given in the message" }
                    @else { ul { @for c in contact { li class="partner-text" { (c) } } } }
                }
            }
        }
    }
}

/// One grid-fee reduction with its timeline and, when rejected, the reason, the grid
/// operator's contact and the re-order button.
pub fn grid_fee_detail(frame: &Frame<'_>, r: &GridFeeRecord, c: &OrderContext<'_>) -> Markup {
    let o = &r.order;
    layout(
        Some(frame),
        &format!("Grid-fee reduction {}", o.id),
        false,
        html! {
            dl class="facts" {
                dt { "Status" } dd class={"status-" (serde_text(&o.status))} { (term(&serde_text(&o.status), grid_status_de(o.status))) }
                dt { "Module" } dd { (serde_text(&o.reduction_type)) }
                dt { "Product" } dd { (o.product.as_ref().map_or_else(|| "—".to_string(), serde_text)) }
                dt { (term("Market location", "Marktlokation")) } dd { (o.market_location.as_str()) }
                dt { (term("Grid operator", "Netzbetreiber")) } dd { (o.grid_operator.as_str()) }
                dt { "Meter" } dd { (serde_text(&o.meter_type)) }
                dt { "Subscription" } dd { a href={"/ui/grid-fee-reductions" (query(&[("subscription", &o.subscription)]))} { (o.subscription) } }
                dt { (term("Change date wanted", "Änderungsdatum")) } dd { (r.effective_date.map_or_else(|| "next possible date".to_string(), |d| d.to_string())) }
                dt { "Order document (BGM)" } dd { (o.order_document.as_deref().unwrap_or("—")) }
                dt { (term("Valid from", "gültig ab")) } dd { (date(o.valid_from)) }
                dt { (term("Valid until", "gültig bis")) } dd { (date(o.valid_until)) }
                dt { "Created" } dd { (when(r.created_at)) }
                dt { "Updated" } dd { (when(r.updated_at)) }
            }
            @if let Some(rej) = &o.rejection {
                (rejection_block(term("Rejection", "Ablehnung"), rej, c.contact))
                @if o.status == GridFeeStatus::Rejected {
                    section aria-labelledby="reorder" {
                        h2 id="reorder" { (term("Re-order", "erneut bestellen")) }
                        p { "Once the cause is fixed: a new order with the same data. This order stays as it is, for the audit." }
                        form method="post" action={"/ui/grid-fee-reductions/" (o.id) "/reorder"} class="action" {
                            input type="hidden" name="csrf" value=(frame.csrf);
                            label for="effective_date" { "Change date (empty: next possible date)" }
                            input id="effective_date" name="effective_date" type="date";
                            button type="submit" { "Re-order" }
                        }
                    }
                }
            }
            (context_sections(frame, c))
        },
    )
}

/// One meter order with its timeline, dates and, when blocked, the reason.
pub fn meter_detail(frame: &Frame<'_>, r: &MeterOrderRecord, c: &OrderContext<'_>) -> Markup {
    let o = &r.order;
    layout(
        Some(frame),
        &format!("Meter order {}", o.id),
        false,
        html! {
            dl class="facts" {
                dt { "Status" } dd class={"status-" (serde_text(&o.status))} { (term(&serde_text(&o.status), meter_status_de(o.status))) }
                dt { (term("Market location", "Marktlokation")) } dd { (o.market_location.as_str()) }
                dt { (term("Metering location", "Messlokation")) } dd { (o.metering_location.as_ref().map_or("—", |m| m.as_str())) }
                dt { (term("Metering operator", "Messstellenbetreiber")) } dd { (o.metering_operator.as_str()) }
                dt { "Subscription" } dd { (o.subscription) }
                dt { (term("Wanted date", "Wunschtermin")) } dd { (date(r.wanted_date)) }
                dt { "Order document (BGM)" } dd { (o.order_document.as_deref().unwrap_or("—")) }
                dt { (term("Appointment", "Einbautermin")) } dd { (naive(o.appointment_at)) }
                dt { (term("Installed", "eingebaut")) } dd { (naive(o.installed_at)) }
                dt { (term("Activated", "aktiviert")) } dd { (naive(o.activated_at)) }
                dt { (term("Cancelled because", "Stornogrund")) } dd { (o.cancelled_reason.as_ref().map_or_else(|| "—".to_string(), serde_text)) }
                dt { (term("Blocked since", "blockiert seit")) } dd { (naive(o.blocked_at)) }
            }
            @if let Some(b) = &o.blocked_reason {
                (rejection_block(term("Blocked", "Ablehnung"), b, c.contact))
            }
            (context_sections(frame, c))
        },
    )
}

/// Journal entries as a table.
pub fn journal_table(entries: &[JournalEntry]) -> Markup {
    html! {
        table {
            thead { tr {
                th scope="col" { "Interchange" } th scope="col" { "Dir." } th scope="col" { "Partner" }
                th scope="col" { "Types" } th scope="col" { "PIDs" } th scope="col" { "UNB ref." }
                th scope="col" { "Documents" } th scope="col" { "State" } th scope="col" { "Time" }
            } }
            tbody {
                @for e in entries {
                    tr {
                        td { a href={"/ui/journal/" (e.id)} { (e.id) } }
                        td { (e.direction.as_str()) }
                        td { (e.partner) }
                        td { (e.message_types.join(", ")) }
                        td { (e.pids.join(", ")) }
                        td { (e.interchange_ref.as_deref().unwrap_or("—")) }
                        td { (e.document_numbers.join(", ")) }
                        td { (e.state.as_str()) }
                        td { (when_opt(e.received_at.or(e.sent_at))) }
                    }
                }
                @if entries.is_empty() { tr { td colspan="9" { "Nothing." } } }
            }
        }
    }
}

/// The journal search form's values (the API's filter names).
#[derive(Debug, Clone, Default)]
pub struct JournalSearch {
    /// `filter[direction][eq]`.
    pub direction: String,
    /// `filter[partner][eq]`.
    pub partner: String,
    /// `filter[pid][eq]`.
    pub pid: String,
    /// `filter[message_type][eq]`.
    pub message_type: String,
    /// `filter[state][eq]`.
    pub state: String,
    /// `filter[time][gte]`.
    pub from: String,
    /// `filter[time][lt]`.
    pub until: String,
    /// A reference (UNB, UNH or BGM), matched on this page.
    pub reference: String,
}

impl JournalSearch {
    /// The pairs of the query string.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("filter[direction][eq]", self.direction.as_str()),
            ("filter[partner][eq]", self.partner.as_str()),
            ("filter[pid][eq]", self.pid.as_str()),
            ("filter[message_type][eq]", self.message_type.as_str()),
            ("filter[state][eq]", self.state.as_str()),
            ("filter[time][gte]", self.from.as_str()),
            ("filter[time][lt]", self.until.as_str()),
            ("reference", self.reference.as_str()),
        ]
    }
}

/// The journal search.
pub fn journal_list(frame: &Frame<'_>, page: &Page<JournalEntry>, s: &JournalSearch) -> Markup {
    let field = |id: &str, name: &str, label: &str, value: &str, hint: &str| {
        html! {
            span class="field" {
                label for=(id) { (label) }
                input id=(id) name=(name) type="text" value=(value) placeholder=(hint);
            }
        }
    };
    layout(
        Some(frame),
        "Journal",
        false,
        html! {
            form method="get" action="/ui/journal" class="filters" {
                span class="field" {
                    label for="direction" { "Direction" }
                    select id="direction" name="filter[direction][eq]" {
                        option value="" { "both" }
                        option value="in" selected[s.direction == "in"] { "in (received)" }
                        option value="out" selected[s.direction == "out"] { "out (sent)" }
                    }
                }
                (field("partner", "filter[partner][eq]", "Partner", &s.partner, "9904292000003"))
                (field("pid", "filter[pid][eq]", "PID", &s.pid, "19133"))
                (field("message_type", "filter[message_type][eq]", "Message type", &s.message_type, "ORDRSP"))
                (field("state", "filter[state][eq]", "State", &s.state, "processed"))
                (field("from", "filter[time][gte]", "From", &s.from, "2026-06-01T00:00:00Z"))
                (field("until", "filter[time][lt]", "Until", &s.until, "2026-06-02T00:00:00Z"))
                (field("reference", "reference", "Reference (UNB, UNH, BGM)", &s.reference, ""))
                button type="submit" { "Search" }
            }
            (journal_table(&page.items))
            (next_link(&page.next_cursor, "/ui/journal", &s.pairs()))
        },
    )
}

/// One interchange: facts, the readable tree, the raw bytes with the findings, related
/// acknowledgements and the download.
pub fn journal_detail(
    frame: &Frame<'_>,
    item: &JournalItem,
    tree: Markup,
    raw: Markup,
    related: &[JournalEntry],
    acks_queued: &[OutboxItem],
) -> Markup {
    layout(
        Some(frame),
        &format!("Interchange {}", item.id),
        false,
        html! {
            dl class="facts" {
                dt { "Direction" } dd { (item.direction.as_str()) }
                dt { "Partner" } dd { (item.partner) }
                dt { "Transport" } dd { (item.transport) }
                dt { "UNB reference" } dd { (item.interchange_ref.as_deref().unwrap_or("—")) }
                dt { "Messages" } dd { (item.message_types.join(", ")) " · " (item.message_refs.join(", ")) }
                dt { "PIDs" } dd { (item.pids.join(", ")) }
                dt { "Documents (BGM)" } dd { (item.document_numbers.join(", ")) }
                dt { "Received / sent" } dd { (when_opt(item.received_at.or(item.sent_at))) }
                dt { "State" } dd { (item.state.as_str()) " (attempts " (item.attempts) ")" }
                dt { "Raw bytes" } dd { a href={"/ui/journal/" (item.id) "/raw"} download { "Download (" (item.raw.len()) " bytes)" } }
            }
            section aria-labelledby="raw" {
                h2 id="raw" { "Raw EDIFACT with findings" }
                (raw)
            }
            section aria-labelledby="tree" {
                h2 id="tree" { "Segment tree" }
                (tree)
            }
            section aria-labelledby="acks" {
                h2 id="acks" { "CONTRL / APERAK exchanged for it" }
                (journal_table(related))
                @if !acks_queued.is_empty() {
                    table {
                        caption { "Acknowledgements and answers queued for it" }
                        thead { tr { th scope="col" { "Item" } th scope="col" { "Kind" } th scope="col" { "State" } th scope="col" { "Due" } th scope="col" { "Sent" } } }
                        tbody {
                            @for o in acks_queued {
                                tr { td { (o.id) } td { (o.kind.as_str()) } td { (o.state.as_str()) } td { (when_opt(o.due_at)) } td { (when_opt(o.sent_at)) } }
                            }
                        }
                    }
                }
            }
            @if let Some(outcome) = &item.outcome {
                section aria-labelledby="outcome" {
                    h2 id="outcome" { "Processing outcome" }
                    details {
                        summary { "As stored (JSON)" }
                        pre { (outcome.value().and_then(|v| serde_json::to_string_pretty(&v)).unwrap_or_else(|_| outcome.as_str().to_string())) }
                    }
                }
            }
        },
    )
}

/// The forward feed: messages for the core.
pub fn messages_list(frame: &Frame<'_>, page: &Page<StoredMessage>, state: &str) -> Markup {
    layout(
        Some(frame),
        "Forwarded messages",
        false,
        html! {
            form method="get" action="/ui/messages" class="filters" {
                label for="state" { "State" }
                select id="state" name="state" {
                    @for s in ["new", "taken", "rejected", "refused", "sent", "accepted", "failed", "overdue"] {
                        option value=(s) selected[state == s] { (s) }
                    }
                }
                button type="submit" { "Filter" }
            }
            table {
                thead { tr { th scope="col" { "Message" } th scope="col" { "Partner" } th scope="col" { "Type" } th scope="col" { "PID" } th scope="col" { "Reference" } th scope="col" { "APERAK" } th scope="col" { "Due" } th scope="col" { "Received" } } }
                tbody {
                    @for m in &page.items {
                        tr {
                            td { a href={"/ui/journal/" (m.journal_id)} { (m.id) } }
                            td { (m.partner) }
                            td { (m.message_type) " " (m.version) }
                            td { (m.pid.map_or_else(|| "—".to_string(), |p| p.to_string())) }
                            td { (m.message_ref) " / " (m.document_number.as_deref().unwrap_or("—")) }
                            td { (m.aperak) }
                            td { (when_opt(m.aperak_due)) }
                            td { (when(m.created_at)) }
                        }
                    }
                    @if page.items.is_empty() { tr { td colspan="8" { "Nothing." } } }
                }
            }
            (next_link(&page.next_cursor, "/ui/messages", &[("state", state)]))
        },
    )
}

/// The open clearing entries, each with a resolve form.
pub fn clearing_list(frame: &Frame<'_>, page: &Page<ClearingItem>) -> Markup {
    layout(
        Some(frame),
        "Clearing",
        false,
        html! {
            p { "Received messages that matched nothing or could not be processed. Resolving one removes it from this list; the message stays in the journal." }
            table {
                thead { tr { th scope="col" { "Entry" } th scope="col" { "Partner" } th scope="col" { "UNB ref." } th scope="col" { "Reason" } th scope="col" { "Since" } th scope="col" { "Resolve" } } }
                tbody {
                    @for c in &page.items {
                        tr id=(c.id) {
                            td { a href={"/ui/journal/" (c.journal_id)} { (c.id) } }
                            td { (c.partner.as_deref().unwrap_or("—")) }
                            td { (c.interchange_ref.as_deref().unwrap_or("—")) }
                            td class="partner-text" { (c.reason) }
                            td { (when(c.created_at)) }
                            td { (action(frame, &format!("/ui/clearing/{}/resolve", c.id), "Resolve", Some(&format!("note-{}", c.id)))) }
                        }
                    }
                    @if page.items.is_empty() { tr { td colspan="6" { "No open entry." } } }
                }
            }
            (next_link(&page.next_cursor, "/ui/clearing", &[]))
        },
    )
}

/// The parked outbox items (waiting for an operator, or given up).
pub fn outbox_list(frame: &Frame<'_>, page: &Page<ParkedItem>, given_up: bool) -> Markup {
    layout(
        Some(frame),
        if given_up {
            "Outbox: given up"
        } else {
            "Outbox: parked"
        },
        false,
        html! {
            p {
                @if given_up { a href="/ui/outbox" { "Show the parked items waiting for an operator" } }
                @else { a href="/ui/outbox?given_up=1" { "Show the items given up" } }
            }
            table {
                thead { tr { th scope="col" { "Item" } th scope="col" { "Kind" } th scope="col" { "Order" } th scope="col" { "Partner" } th scope="col" { "Attempts" } th scope="col" { "Why parked (the partner's answer)" } th scope="col" { "Created" } th scope="col" { "Action" } } }
                tbody {
                    @for p in &page.items {
                        @let o = &p.item;
                        tr id=(o.id) {
                            td { (o.id) }
                            td { (o.kind.as_str()) }
                            td {
                                @match (&o.order_kind, &o.order_id) {
                                    (Some(k), Some(id)) => {
                                        @let path = if k.as_str() == "meter_order" { "meter-orders" } else { "grid-fee-reductions" };
                                        a href={"/ui/" (path) "/" (id)} { (id) }
                                    }
                                    _ => { @if let Some(j) = &o.journal_id { a href={"/ui/journal/" (j)} { (j) } } @else { "—" } }
                                }
                            }
                            td { (o.partner) }
                            td { (o.attempts) }
                            td class="partner-text" { (o.last_error.as_deref().unwrap_or("—")) }
                            td { (when(o.created_at)) }
                            td {
                                (action(frame, &format!("/ui/outbox/{}/retry", o.id), "Retry", None))
                                @if !given_up {
                                    (action(frame, &format!("/ui/outbox/{}/give-up", o.id), "Give up", Some(&format!("note-{}", o.id))))
                                } @else {
                                    "given up " (when_opt(p.given_up_at))
                                }
                            }
                        }
                    }
                    @if page.items.is_empty() { tr { td colspan="8" { "Nothing parked." } } }
                }
            }
            (next_link(&page.next_cursor, "/ui/outbox", &[("given_up", if given_up { "1" } else { "" })]))
        },
    )
}

/// The quarantined mails.
pub fn quarantine_list(frame: &Frame<'_>, page: &Page<QuarantineItem>) -> Markup {
    layout(
        Some(frame),
        "Quarantine",
        false,
        html! {
            p { "Mails not taken in (unsigned, not decryptable, signed by someone else, no or several interchanges). They also stay on the mail server." }
            table {
                thead { tr { th scope="col" { "Mail" } th scope="col" { "From (not verified)" } th scope="col" { "Subject" } th scope="col" { "Reason" } th scope="col" { "Received" } th scope="col" { "Raw" } } }
                tbody {
                    @for q in &page.items {
                        tr {
                            td { (q.id) }
                            td class="partner-text" { (q.from) }
                            td class="partner-text" { (q.subject) }
                            td { (q.reason) }
                            td { (when(q.received_at)) }
                            td { a href={"/ui/quarantine/" (q.id) "/raw"} download { "Download (" (q.size) " bytes)" } }
                        }
                    }
                    @if page.items.is_empty() { tr { td colspan="6" { "No mail in quarantine." } } }
                }
            }
            (next_link(&page.next_cursor, "/ui/quarantine", &[]))
        },
    )
}

/// The received AS4 requests of one outcome.
pub fn as4_list(frame: &Frame<'_>, page: &Page<As4Request>, outcome: &str) -> Markup {
    layout(
        Some(frame),
        "AS4 requests",
        false,
        html! {
            form method="get" action="/ui/as4" class="filters" {
                label for="outcome" { "Outcome" }
                select id="outcome" name="outcome" {
                    @for o in ["refused", "receipted", "busy", "pending"] {
                        option value=(o) selected[outcome == o] { (o) }
                    }
                }
                button type="submit" { "Filter" }
            }
            table {
                thead { tr { th scope="col" { "Request" } th scope="col" { "Peer" } th scope="col" { "Outcome" } th scope="col" { "ebMS code" } th scope="col" { "Reason" } th scope="col" { "Received" } th scope="col" { "Raw" } } }
                tbody {
                    @for r in &page.items {
                        tr {
                            td { (r.id) }
                            td { (r.peer) }
                            td { (r.outcome) @if let Some(s) = r.http_status { " (HTTP " (s) ")" } }
                            td { (r.ebms_code.as_deref().unwrap_or("—")) }
                            td class="partner-text" { (r.reason.as_deref().unwrap_or("—")) }
                            td { (when(r.received_at)) }
                            td { a href={"/ui/as4/" (r.id) "/raw"} download { "Download (" (r.size) " bytes)" } }
                        }
                    }
                    @if page.items.is_empty() { tr { td colspan="7" { "Nothing." } } }
                }
            }
            (next_link(&page.next_cursor, "/ui/as4", &[("outcome", outcome)]))
        },
    )
}

/// The answers awaited past their deadline (or all open ones).
pub fn deadlines_list(
    frame: &Frame<'_>,
    page: &Page<StoredDeadline>,
    now: DateTime<Utc>,
) -> Markup {
    layout(
        Some(frame),
        "Answers overdue",
        false,
        html! {
            table {
                thead { tr { th scope="col" { "Awaiting" } th scope="col" { "From" } th scope="col" { "Our reference" } th scope="col" { "Order" } th scope="col" { "Due" } } }
                tbody {
                    @for d in &page.items {
                        tr class=[(d.due_at < now).then_some("overdue")] {
                            td { (d.awaiting) }
                            td { (d.partner) }
                            td { (d.reference) }
                            td { @if let Some(o) = &d.order_id {
                                @let path = if o.starts_with("mo") { "meter-orders" } else { "grid-fee-reductions" };
                                a href={"/ui/" (path) "/" (o)} { (o) } } @else { "—" } }
                            td { (when(d.due_at)) }
                        }
                    }
                    @if page.items.is_empty() { tr { td colspan="5" { "No answer overdue." } } }
                }
            }
            (next_link(&page.next_cursor, "/ui/deadlines", &[]))
        },
    )
}

/// Audit entries as a table.
pub fn audit_table(entries: &[AuditEntry]) -> Markup {
    html! {
        table {
            thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "On" } th scope="col" { "Note" } } }
            tbody {
                @for a in entries {
                    tr { td { (when(a.at)) } td { (a.actor) } td { (a.action) } td { (a.target) } td { (a.note.as_deref().unwrap_or("—")) } }
                }
                @if entries.is_empty() { tr { td colspan="5" { "No action recorded." } } }
            }
        }
    }
}

/// The audit trail.
pub fn audit_list(frame: &Frame<'_>, page: &Page<AuditEntry>) -> Markup {
    layout(
        Some(frame),
        "Audit trail",
        false,
        html! {
            p { "Every action taken in the console or through the API's operator routes: who, when, what." }
            (audit_table(&page.items))
            (next_link(&page.next_cursor, "/ui/audit", &[]))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::{GridFeeReduction, MeterType, ReductionType, Rejection};
    use chrono::TimeZone;

    const HOSTILE: &str = "<script>alert(1)</script> \"quoted\" & 'single'";

    fn frame() -> Frame<'static> {
        Frame {
            operator: "Erika <i>",
            csrf: "c5rf",
        }
    }

    fn rejected() -> GridFeeRecord {
        let at = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
        GridFeeRecord {
            order: GridFeeReduction {
                id: "gfr_1".into(),
                subscription: "sub-1".into(),
                reduction_type: ReductionType::Module1,
                market_location: "51238696781".parse().unwrap(),
                grid_operator: "9904292000003".parse().unwrap(),
                meter_type: MeterType::Smart,
                status: GridFeeStatus::Rejected,
                product: None,
                order_document: Some("MG0000004B".into()),
                accepted: false,
                valid_from: None,
                valid_until: None,
                rejection: Some(Rejection {
                    code: "A99".into(),
                    text: Some(HOSTILE.into()),
                    meaning_de: "Ablehnung: Sonstiges (siehe Freitext)".into(),
                    meaning_en: "rejected: other reason (see free text)".into(),
                    message_reference: Some("NB1/1".into()),
                }),
            },
            effective_date: None,
            version: 3,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn a_rejection_shows_the_partners_text_as_text_with_both_languages_and_a_reorder_form() {
        let contact = vec![format!("Contact (IC): {HOSTILE}")];
        let html = grid_fee_detail(
            &frame(),
            &rejected(),
            &OrderContext {
                contact: &contact,
                ..OrderContext::default()
            },
        )
        .into_string();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html
            .contains("&lt;script&gt;alert(1)&lt;/script&gt; &quot;quoted&quot; &amp; 'single'"));
        assert!(html.contains("Ablehnung: Sonstiges (siehe Freitext)"));
        assert!(html.contains("rejected: other reason (see free text)"));
        assert!(html.contains("action=\"/ui/grid-fee-reductions/gfr_1/reorder\""));
        assert!(
            html.contains("Erika &lt;i&gt;"),
            "the operator's name is escaped too"
        );
    }

    #[test]
    fn every_form_that_posts_carries_the_csrf_token_and_no_page_has_inline_script_or_style() {
        let html = grid_fee_detail(&frame(), &rejected(), &OrderContext::default()).into_string();
        let posts = html.matches("method=\"post\"").count();
        assert!(posts >= 2, "logout and re-order");
        assert_eq!(
            html.matches("name=\"csrf\" value=\"c5rf\"").count(),
            posts,
            "{html}"
        );
        for page in [html, login(None).into_string()] {
            assert!(!page.contains(" style="), "no inline style");
            assert!(!page.contains(" onclick="), "no inline handler");
            assert_eq!(
                page.matches("<script").count(),
                page.matches("<script src=\"/ui/static/console.js\" defer></script>")
                    .count(),
                "only the external script"
            );
        }
    }

    #[test]
    fn a_certificate_within_thirty_days_is_warned_about() {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
        let certs = vec![
            Certificate {
                owner: "own e-mail".into(),
                subject: "CN=soon".into(),
                not_after: now + chrono::Duration::days(10),
            },
            Certificate {
                owner: "partner 9904292000003 e-mail".into(),
                subject: "CN=later".into(),
                not_after: now + chrono::Duration::days(200),
            },
        ];
        let html = health_tables(&Snapshot::default(), &certs, now).into_string();
        assert!(html.contains("expires in 10 days"), "{html}");
        assert!(html.contains("state-up\">valid"));
    }
}
