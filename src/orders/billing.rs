//! UTILMD 55218 "Abrechnungsdaten Netznutzungsabrechnung" read per Verwendungszeitraum, the
//! §14a modules its Artikel-IDs show, and its review against what we ordered: the EBD E_0610
//! code for each Zeitraum-ID that the UTILMD 55220 answers, and our view of the data where we
//! answer A02.
//!
//! Pure: no store, no clock. What the review compares with comes in as an [`Expectation`].
//!
//! Sources (facts, not code):
//! - AHB UTILMD Strom 2.1 (FV2510/FV2604), PID 55218: SG6 `RFF+Z49` "Gültige Daten" and
//!   `RFF+Z53` "Keine Daten" with the Zeitraum-ID in DE1156 (numbered in message order,
//!   \[126\]); `DTM+Z25` in every period, `DTM+Z26` Muss in every period but the last
//!   (\[471\]); the data of a Z49 period in SG8 `SEQ+Z45`/`SEQ+Z84` whose DE1050 names its
//!   Zeitraum-ID (\[22\], \[2005\]), with `PIA+Z02+<Artikel-ID>:Z09|Z10`. The 55218 carries no
//!   CCI/CAV with the ZH9 module code of the ORDERS 17133: the module shows only as Artikel-ID.
//!   (adriansprk/conuti-maco-app `ahb-tables/FV2604/AHB_FV2604_55218.json`.)
//! - BDEW Codeliste der Artikelnummern und Artikel-ID 5.6 (Lesefassung 2025-09-30), §3.1:
//!   "Pauschale Reduzierung nach Modul 1 … § 14a EnWG" is `1-02-0-015` (Grundpreis-/
//!   Arbeitspreissystem), `1-01-9-001` (Jahresleistungspreissystem Niederspannung),
//!   `1-01-9-002` (Umspannung Mittel-/Niederspannung; `1-01-6-005` before 2025-01-01), the
//!   Gruppenartikel-IDs `1-03-9`/`1-03-8` (Monatsleistungspreissystem) and `1-07-4-001`
//!   (individuelle Netzentgelte); "Arbeitspreis nach Modul 2" is `1-02-0-016`; "nach Modul 3
//!   Arbeitspreis HT/NT" are `1-02-0-017`/`1-02-0-018`. The same Modul-1 list is in INVOIC MIG
//!   2.8e (ALC `Z05`), with "Modul 1 in Kombination mit Modul 3" as 1-02-0-015 with
//!   1-02-0-001, -002, -017, -018.
//! - BDEW Anwendungshilfe LFW24 1.7 (2025-12-08), chapter 8: the grid operator's 55218 for
//!   Modul 1 carries `1-02-0-015` ("entspricht Modul 1"), for Modul 1 und 3 additionally
//!   `1-02-0-017`/`1-02-0-018`; a change is a closed Zeitraum-ID 1 followed by an open
//!   Zeitraum-ID 2 (adriansprk/conuti-maco-app `bdew-docs/BDEW_AWH_LFW24_V1_7_20251208.md`).
//! - EBD E_0610 "Abrechnungsdaten Netznutzungsabrechnung prüfen" (LF), step 10 for every
//!   Verwendungszeitraum: A01 the recipient takes the data over without remark; A02 it takes
//!   them over and tells the grid operator they are not correct in its view, giving back the
//!   data it holds correct (Hochfrequenz/machine-readable_entscheidungsbaumdiagramme
//!   `FV2604/E_0610.json`).

use chrono::{Duration, NaiveDate};
use serde::Serialize;

use super::rules::ReductionType;
use crate::grammar::Validated;
use crate::ids::parse_date_303;

/// What a UTILMD 55218 says: the billing data of one market location per Verwendungszeitraum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BillingData {
    /// LOC+Z16: the market location.
    pub market_location: String,
    /// IDE+24: the Vorgangsnummer, named back in the UTILMD 55220 answer (`RFF+TN`).
    pub transaction: String,
    /// The Verwendungszeiträume (SG6 `RFF+Z49`/`RFF+Z53`), in message order. The 55220
    /// answers each with its own `STS+E01` (AHB UTILMD 55220 \[2011\]).
    pub periods: Vec<UsagePeriod>,
}

/// Whether a Verwendungszeitraum carries data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    /// `RFF+Z49` "Gültige Daten" (in our view: `RFF+Z48` "Erwartete Daten").
    Data,
    /// `RFF+Z53` "Keine Daten" (in our view: `RFF+Z55` "Keine Daten erwartet").
    NoData,
}

/// One Verwendungszeitraum of a 55218.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsagePeriod {
    /// DE1156: the Zeitraum-ID.
    pub id: String,
    /// Data or no data.
    pub kind: PeriodKind,
    /// DTM+Z25 "Verwendung der Daten ab": the German day from which the period applies.
    pub from: NaiveDate,
    /// DTM+Z26 "Verwendung der Daten bis": the German day at whose start (00:00) it stops
    /// applying, i.e. the exclusive end; `None` for an open period.
    pub until: Option<NaiveDate>,
    /// The Artikel-IDs of the SG8 `SEQ+Z45`/`SEQ+Z84` that name this period.
    pub articles: Vec<Article>,
}

/// `PIA+Z02+<id>:<qualifier>`: a Gruppenartikel-ID or Artikel-ID, with the quantities of
/// its SG9.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Article {
    /// DE7140, e.g. `1-02-0-015`.
    pub id: String,
    /// DE7143: `Z09` Artikel-ID or `Z10` Gruppenartikel-ID.
    pub qualifier: String,
    /// SG9 `QTY`: Gemeinderabatt (`Z16`), Zu-/Abschlag (`Z34`/`Z35`/`Z37`), Anzahl (`Z38`) …
    pub quantities: Vec<Quantity>,
}

/// `QTY+<qualifier>:<value>:<unit>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quantity {
    /// DE6063.
    pub qualifier: String,
    /// DE6060.
    pub value: String,
    /// DE6411.
    pub unit: String,
}

impl Quantity {
    fn percent(qualifier: &str) -> Quantity {
        Quantity {
            qualifier: qualifier.to_string(),
            value: "0".to_string(),
            unit: "P1".to_string(),
        }
    }
}

impl Article {
    /// An article we name in our view: `Z10` for a Gruppenartikel-ID (format n1-n2-n1), `Z09`
    /// for an Artikel-ID (Codeliste der Artikelnummern und Artikel-ID 5.6 §3); no
    /// Gemeinderabatt (`QTY+Z16:0:P1`) and no Zu-/Abschlag (`QTY+Z37:0:P1`), the two SG9 the
    /// MIG has as mandatory in SG8 (AHB 55220: "Soll \[8\]").
    fn ours(id: &str) -> Article {
        let qualifier = if id.matches('-').count() == 2 {
            "Z10"
        } else {
            "Z09"
        };
        Article {
            id: id.to_string(),
            qualifier: qualifier.to_string(),
            quantities: vec![Quantity::percent("Z16"), Quantity::percent("Z37")],
        }
    }
}

impl UsagePeriod {
    /// The §14a modules this period's articles show (none for a period without data).
    pub fn modules(&self) -> Vec<ReductionType> {
        modules_shown(&self.articles)
    }

    fn covers(&self, day: NaiveDate) -> bool {
        self.from <= day && self.until.is_none_or(|u| day < u)
    }
}

/// Artikel-IDs (and Gruppenartikel-IDs, matched with their Artikel-IDs) of the flat reduction
/// "nach Modul 1" usable in UTILMD (Codeliste 5.6 §3.1.1–§3.1.7, module docs).
const MODULE_1: [&str; 7] = [
    "1-01-6-005",
    "1-01-9-001",
    "1-01-9-002",
    "1-02-0-015",
    "1-03-8",
    "1-03-9",
    "1-07-4-001",
];
/// "Arbeitspreis nach Modul 2" (Codeliste 5.6 §3.1.2).
const MODULE_2: [&str; 1] = ["1-02-0-016"];
/// "nach Modul 3 … Arbeitspreis HT" and "… NT" (Codeliste 5.6 §3.1.2).
const MODULE_3: [&str; 2] = ["1-02-0-017", "1-02-0-018"];
/// The Arbeitspreis of the Grundpreis-/Arbeitspreissystem for "sonstiger Verbrauch" and for
/// market locations billed by Modul 1 and/or 3; Modul 2 has its own (`1-02-0-016`).
const STANDARD_ENERGY_PRICE: &str = "1-02-0-002";

fn is_in(id: &str, list: &[&str]) -> bool {
    list.iter()
        .any(|code| id == *code || id.strip_prefix(code).is_some_and(|r| r.starts_with('-')))
}

fn is_module_article(id: &str) -> bool {
    is_in(id, &MODULE_1) || is_in(id, &MODULE_2) || is_in(id, &MODULE_3)
}

/// The §14a modules that `articles` show, in module order (Codeliste 5.6; see the module
/// docs): Modul 1 by its flat reduction, Modul 2 by its Arbeitspreis, Modul 3 by its HT/NT
/// Arbeitspreise.
pub fn modules_shown(articles: &[Article]) -> Vec<ReductionType> {
    let any = |list: &[&str]| articles.iter().any(|a| is_in(&a.id, list));
    [
        (ReductionType::Module1, any(&MODULE_1)),
        (ReductionType::Module2, any(&MODULE_2)),
        (ReductionType::Module3, any(&MODULE_3)),
    ]
    .into_iter()
    .filter_map(|(t, shown)| shown.then_some(t))
    .collect()
}

/// The modules in words, for reasons and clearing entries.
pub fn describe_modules(types: &[ReductionType]) -> String {
    let names: Vec<&str> = types
        .iter()
        .map(|t| match t {
            ReductionType::Module1 => "Modul 1",
            ReductionType::Module2 => "Modul 2",
            ReductionType::Module3 => "Modul 3",
        })
        .collect();
    if names.is_empty() {
        "no §14a module".to_string()
    } else {
        names.join(" + ")
    }
}

/// The Modul-1 article of the price system `articles` belong to (Codeliste 5.6 §3.1): the
/// grid operator's own if it names one; else by the system of its other articles; the
/// Grundpreis-/Arbeitspreissystem (`1-02-0-015`) where nothing else is recognisable (the
/// system of the household-sized market locations §14a is about). An inference from the code
/// list, used only for our view in an A02.
fn module_1_article(articles: &[Article]) -> Article {
    if let Some(own) = articles.iter().find(|a| is_in(&a.id, &MODULE_1)) {
        return own.clone();
    }
    let has = |prefix: &str| articles.iter().any(|a| a.id.starts_with(prefix));
    let id = if has("1-01-7") {
        "1-01-9-001"
    } else if has("1-01-6") {
        "1-01-9-002"
    } else if has("1-03-7") {
        "1-03-9"
    } else if has("1-03-6") {
        "1-03-8"
    } else if has("1-07") {
        "1-07-4-001"
    } else {
        "1-02-0-015"
    };
    Article::ours(id)
}

/// `articles` with the module articles changed so that they show `modules`: the grid
/// operator's other articles stay as they are.
fn with_modules(articles: &[Article], modules: &[ReductionType]) -> Vec<Article> {
    let module_1 = module_1_article(articles);
    let mut out: Vec<Article> = articles
        .iter()
        .filter(|a| !is_module_article(&a.id))
        .filter(|a| !(modules.contains(&ReductionType::Module2) && a.id == STANDARD_ENERGY_PRICE))
        .cloned()
        .collect();
    for module in modules {
        match module {
            ReductionType::Module1 => out.push(module_1.clone()),
            ReductionType::Module2 => out.extend(MODULE_2.iter().map(|id| Article::ours(id))),
            ReductionType::Module3 => out.extend(MODULE_3.iter().map(|id| Article::ours(id))),
        }
    }
    out
}

/// The German day of a 303 date written as German midnight in UTC (22:00/23:00 the day
/// before).
fn german_day(value: &str) -> Option<NaiveDate> {
    parse_date_303(value)
        .ok()
        .map(|utc| crate::acks::calendar::berlin_local(utc).date())
}

/// Reads the 55218 Vorgang of a validated UTILMD: the first SG4 whose SG6 `RFF+Z13` names
/// 55218 (or the first SG4 if none does). `None` without market location, Vorgangsnummer or
/// a Verwendungszeitraum with its `DTM+Z25`.
pub fn read_billing_data(v: &Validated<'_>) -> Option<BillingData> {
    let transactions = v.groups_at("SG4");
    let sg4 = transactions
        .iter()
        .find(|g| {
            g.groups("SG6").any(|s| {
                s.qualified(b"RFF", "Z13")
                    .is_some_and(|r| r.value(1, 2) == "55218")
            })
        })
        .or_else(|| transactions.first())?;
    let market_location = sg4
        .groups("SG5")
        .find_map(|g| g.qualified(b"LOC", "Z16"))?
        .value(2, 1)
        .into_owned();
    let transaction = sg4.qualified(b"IDE", "24")?.value(2, 1).into_owned();
    let mut periods = Vec::new();
    for sg6 in sg4.groups("SG6") {
        let Some((rff, kind)) = sg6
            .qualified(b"RFF", "Z49")
            .map(|r| (r, PeriodKind::Data))
            .or_else(|| {
                sg6.qualified(b"RFF", "Z53")
                    .map(|r| (r, PeriodKind::NoData))
            })
        else {
            continue;
        };
        let date = |qualifier: &str| {
            sg6.qualified(b"DTM", qualifier)
                .and_then(|d| german_day(&d.value(1, 2)))
        };
        periods.push(UsagePeriod {
            id: rff.value(1, 3).into_owned(),
            kind,
            from: date("Z25")?,
            until: date("Z26"),
            articles: Vec::new(),
        });
    }
    if periods.is_empty() {
        return None;
    }
    for sg8 in sg4.groups("SG8") {
        let Some(seq) = sg8.segment(b"SEQ") else {
            continue;
        };
        if !matches!(&*seq.value(1, 1), "Z45" | "Z84") {
            continue;
        }
        let period = seq.value(2, 1);
        let Some(target) = periods
            .iter_mut()
            .find(|p| p.kind == PeriodKind::Data && p.id == period)
        else {
            continue;
        };
        let quantities: Vec<Quantity> = sg8
            .groups("SG9")
            .flat_map(|g| g.segments(b"QTY").collect::<Vec<_>>())
            .map(|q| Quantity {
                qualifier: q.value(1, 1).into_owned(),
                value: q.value(1, 2).into_owned(),
                unit: q.value(1, 3).into_owned(),
            })
            .collect();
        for pia in sg8.segments(b"PIA").filter(|p| p.value(1, 1) == "Z02") {
            target.articles.push(Article {
                id: pia.value(2, 1).into_owned(),
                qualifier: pia.value(2, 2).into_owned(),
                quantities: quantities.clone(),
            });
        }
    }
    Some(BillingData {
        market_location,
        transaction,
        periods,
    })
}

impl BillingData {
    /// The data periods in time order.
    fn data_periods(&self) -> Vec<&UsagePeriod> {
        let mut data: Vec<&UsagePeriod> = self
            .periods
            .iter()
            .filter(|p| p.kind == PeriodKind::Data)
            .collect();
        data.sort_by_key(|p| p.from);
        data
    }

    /// Where the data show what `shows` accepts: from the first data period (in time) whose
    /// modules it accepts, through the data periods that continue it without a gap, to the
    /// exclusive end of the last of them (`None`: open). `None` when no period is accepted.
    pub fn module_span(
        &self,
        shows: impl Fn(&[ReductionType]) -> bool,
    ) -> Option<(NaiveDate, Option<NaiveDate>)> {
        let data = self.data_periods();
        let start = data.iter().position(|p| shows(&p.modules()))?;
        let from = data[start].from;
        let mut until = data[start].until;
        for next in &data[start + 1..] {
            match until {
                Some(end) if next.from == end && shows(&next.modules()) => until = next.until,
                _ => break,
            }
        }
        Some((from, until))
    }

    /// True when a data period applies on or after `day`.
    pub fn has_data_from(&self, day: NaiveDate) -> bool {
        self.data_periods()
            .iter()
            .any(|p| p.until.is_none_or(|u| u > day))
    }

    /// The start of the latest data period (the change the 55218 announces last).
    pub(crate) fn latest_data_start(&self) -> Option<NaiveDate> {
        self.data_periods().last().map(|p| p.from)
    }
}

/// The last day a reduction applies when its module stops at the exclusive end `until` (the
/// German midnight of `DTM+Z26`): the day before.
pub fn last_day(until: NaiveDate) -> NaiveDate {
    until - Duration::days(1)
}

/// What an order leads us to expect in a 55218.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The German day from which the modules apply.
    pub from: NaiveDate,
    /// The modules that apply from `from` on.
    pub required: Vec<ReductionType>,
    /// The modules we ordered anew: they do not apply before `from`.
    pub new: Vec<ReductionType>,
    /// From `from` on, exactly `required` (the product ordered) rather than at least it.
    pub exact: bool,
}

impl Expectation {
    /// The modules we expect on a day where the grid operator's data show `shown`.
    fn modules_on(&self, day: NaiveDate, shown: &[ReductionType]) -> Vec<ReductionType> {
        let mut expected: Vec<ReductionType> = if day < self.from {
            shown
                .iter()
                .copied()
                .filter(|t| !self.new.contains(t))
                .collect()
        } else if self.exact {
            self.required.clone()
        } else {
            shown.iter().chain(&self.required).copied().collect()
        };
        expected.sort();
        expected.dedup();
        expected
    }
}

/// An EBD E_0610 result code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum E0610 {
    /// "übernommen ohne Anmerkung".
    A01,
    /// "übernommen; aus Sicht des LF nicht korrekt, Sicht des LF folgt".
    A02,
}

impl E0610 {
    /// The code as written in `STS+E01` DE9013.
    pub fn code(self) -> &'static str {
        match self {
            E0610::A01 => "A01",
            E0610::A02 => "A02",
        }
    }
}

/// The answer to one Verwendungszeitraum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodAnswer {
    /// The Zeitraum-ID of the 55218.
    pub period: String,
    /// The E_0610 code.
    pub code: E0610,
}

/// One Verwendungszeitraum of our view (UTILMD 55220 SG6 `RFF+Z48`/`RFF+Z55`, numbered in
/// order as AHB 55220 \[127\] asks, with its data in SG8 `SEQ+Z82`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViewPeriod {
    /// Data expected (`Z48`) or no data expected (`Z55`).
    pub kind: PeriodKind,
    /// From this German day.
    pub from: NaiveDate,
    /// Until this German day (exclusive), `None`: open.
    pub until: Option<NaiveDate>,
    /// The Artikel-IDs we expect (`SEQ+Z82` / `PIA+Z02`).
    pub articles: Vec<Article>,
}

/// The review of a 55218: what the 55220 says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Review {
    /// One code per Zeitraum-ID (Z49 and Z53), in the 55218's order.
    pub answers: Vec<PeriodAnswer>,
    /// Our view, when some period is answered A02: the grid operator's periods with the
    /// modules we expect (from the date we expect them), empty otherwise.
    pub view: Vec<ViewPeriod>,
    /// What differs, in words.
    pub differences: Vec<String>,
}

impl Review {
    /// True when every period is answered A01.
    pub fn agrees(&self) -> bool {
        self.answers.iter().all(|a| a.code == E0610::A01)
    }
}

fn show_range(from: NaiveDate, until: Option<NaiveDate>) -> String {
    match until {
        Some(u) => format!("{from} to {}", last_day(u)),
        None => format!("from {from}"),
    }
}

/// Reviews a 55218 against `expectation` (EBD E_0610 step 10, for every Verwendungszeitraum
/// over its whole duration): A02 for a data period that shows other modules than we expect
/// on any of its days, A01 for every other period (a "Keine Daten" period, and everything
/// where we hold no view). Where something is A02, our view is the grid operator's periods,
/// split at the day we expect the modules from, with the modules we expect in place of the
/// ones it shows.
pub fn review(data: &BillingData, expectation: Option<&Expectation>) -> Review {
    let mut answers: Vec<PeriodAnswer> = data
        .periods
        .iter()
        .map(|p| PeriodAnswer {
            period: p.id.clone(),
            code: E0610::A01,
        })
        .collect();
    let Some(expectation) = expectation else {
        return Review {
            answers,
            view: Vec::new(),
            differences: Vec::new(),
        };
    };
    let mut view = Vec::new();
    let mut differences = Vec::new();
    for (period, answer) in data.periods.iter().zip(answers.iter_mut()) {
        if period.kind == PeriodKind::NoData {
            view.push(ViewPeriod {
                kind: PeriodKind::NoData,
                from: period.from,
                until: period.until,
                articles: Vec::new(),
            });
            continue;
        }
        let shown = period.modules();
        let split = expectation.from;
        let parts = if period.from < split && period.covers(split) {
            vec![(period.from, Some(split)), (split, period.until)]
        } else {
            vec![(period.from, period.until)]
        };
        for (from, until) in parts {
            let expected = expectation.modules_on(from, &shown);
            let articles = if expected == shown {
                period.articles.clone()
            } else {
                answer.code = E0610::A02;
                differences.push(format!(
                    "Zeitraum-ID {} ({}): the data show {}, we expect {}",
                    period.id,
                    show_range(from, until),
                    describe_modules(&shown),
                    describe_modules(&expected),
                ));
                with_modules(&period.articles, &expected)
            };
            view.push(ViewPeriod {
                kind: PeriodKind::Data,
                from,
                until,
                articles,
            });
        }
    }
    if differences.is_empty() {
        view.clear();
    }
    Review {
        answers,
        view,
        differences,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReductionType::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn articles(ids: &[&str]) -> Vec<Article> {
        ids.iter().map(|id| Article::ours(id)).collect()
    }

    fn period(
        id: &str,
        kind: PeriodKind,
        from: NaiveDate,
        until: Option<NaiveDate>,
        ids: &[&str],
    ) -> UsagePeriod {
        UsagePeriod {
            id: id.into(),
            kind,
            from,
            until,
            articles: articles(ids),
        }
    }

    fn data(periods: Vec<UsagePeriod>) -> BillingData {
        BillingData {
            market_location: "51238696781".into(),
            transaction: "V1".into(),
            periods,
        }
    }

    const MODUL_1: &[&str] = &["1-02-0-001", "1-02-0-002", "1-02-0-015"];
    const PLAIN: &[&str] = &["1-02-0-001", "1-02-0-002"];

    #[test]
    fn the_article_ids_show_the_modules() {
        let cases: &[(&[&str], Vec<ReductionType>)] = &[
            (PLAIN, vec![]),
            (MODUL_1, vec![Module1]),
            (&["1-01-7", "1-01-9-001"], vec![Module1]),
            (&["1-03-9"], vec![Module1]),
            (&["1-03-9-002"], vec![Module1]),
            (&["1-02-0-001", "1-02-0-016"], vec![Module2]),
            (
                &[
                    "1-02-0-001",
                    "1-02-0-002",
                    "1-02-0-015",
                    "1-02-0-017",
                    "1-02-0-018",
                ],
                vec![Module1, Module3],
            ),
            // Legacy §14a tariffs (Bestandsanlagen) are no module.
            (&["1-02-0-004", "1-02-0-009"], vec![]),
            // A prefix of another code is no match.
            (&["1-02-0-0150"], vec![]),
        ];
        for (ids, expected) in cases {
            assert_eq!(&modules_shown(&articles(ids)), expected, "{ids:?}");
        }
    }

    #[test]
    fn a_change_is_a_closed_period_followed_by_an_open_one() {
        // Zeitraum 1 without the module (closed), Zeitraum 2 with it (open).
        let d = data(vec![
            period(
                "1",
                PeriodKind::Data,
                day(2026, 1, 1),
                Some(day(2026, 6, 1)),
                PLAIN,
            ),
            period("2", PeriodKind::Data, day(2026, 6, 1), None, MODUL_1),
        ]);
        assert_eq!(
            d.module_span(|s| s == [Module1]),
            Some((day(2026, 6, 1), None))
        );
        // Modul 1 in 1 and 2, then no data: the module ends with Zeitraum 2.
        let d = data(vec![
            period(
                "1",
                PeriodKind::Data,
                day(2026, 6, 1),
                Some(day(2026, 9, 1)),
                MODUL_1,
            ),
            period(
                "2",
                PeriodKind::Data,
                day(2026, 9, 1),
                Some(day(2027, 1, 1)),
                MODUL_1,
            ),
            period("3", PeriodKind::NoData, day(2027, 1, 1), None, &[]),
        ]);
        assert_eq!(
            d.module_span(|s| s.contains(&Module1)),
            Some((day(2026, 6, 1), Some(day(2027, 1, 1))))
        );
        assert_eq!(last_day(day(2027, 1, 1)), day(2026, 12, 31));
    }

    fn ordered_modul_1_from(from: NaiveDate) -> Expectation {
        Expectation {
            from,
            required: vec![Module1],
            new: vec![Module1],
            exact: true,
        }
    }

    #[test]
    fn data_as_ordered_are_answered_a01_everywhere() {
        let d = data(vec![
            period(
                "1",
                PeriodKind::NoData,
                day(2025, 1, 1),
                Some(day(2026, 6, 1)),
                &[],
            ),
            period("2", PeriodKind::Data, day(2026, 6, 1), None, MODUL_1),
        ]);
        let r = review(&d, Some(&ordered_modul_1_from(day(2026, 6, 1))));
        assert!(r.agrees(), "{r:?}");
        assert!(r.view.is_empty());
        assert_eq!(r.answers.len(), 2, "Z53 periods are answered too");
    }

    #[test]
    fn a_missing_module_is_answered_a02_with_our_view() {
        let d = data(vec![
            period(
                "1",
                PeriodKind::Data,
                day(2026, 1, 1),
                Some(day(2026, 6, 1)),
                PLAIN,
            ),
            period("2", PeriodKind::Data, day(2026, 6, 1), None, PLAIN),
        ]);
        let r = review(&d, Some(&ordered_modul_1_from(day(2026, 6, 1))));
        assert_eq!(
            r.answers.iter().map(|a| a.code).collect::<Vec<_>>(),
            vec![E0610::A01, E0610::A02]
        );
        assert_eq!(r.view.len(), 2);
        assert_eq!(
            r.view[0].articles,
            articles(PLAIN),
            "no view before our date"
        );
        assert_eq!(r.view[1].articles, articles(MODUL_1));
        assert_eq!(r.view[1].from, day(2026, 6, 1));
        assert!(r.differences[0].contains("no §14a module, we expect Modul 1"));
    }

    #[test]
    fn a_module_from_another_date_is_answered_a02_split_at_our_date() {
        // Ordered from 2026-07-01; the grid operator applies it from 2026-06-01.
        let d = data(vec![period(
            "1",
            PeriodKind::Data,
            day(2026, 6, 1),
            None,
            MODUL_1,
        )]);
        let r = review(&d, Some(&ordered_modul_1_from(day(2026, 7, 1))));
        assert_eq!(r.answers[0].code, E0610::A02);
        let view: Vec<(NaiveDate, Option<NaiveDate>, Vec<ReductionType>)> = r
            .view
            .iter()
            .map(|v| (v.from, v.until, modules_shown(&v.articles)))
            .collect();
        assert_eq!(
            view,
            vec![
                (day(2026, 6, 1), Some(day(2026, 7, 1)), vec![]),
                (day(2026, 7, 1), None, vec![Module1]),
            ]
        );
    }

    #[test]
    fn another_module_is_answered_a02() {
        let d = data(vec![period(
            "1",
            PeriodKind::Data,
            day(2026, 6, 1),
            None,
            &["1-02-0-001", "1-02-0-016"],
        )]);
        let r = review(&d, Some(&ordered_modul_1_from(day(2026, 6, 1))));
        assert_eq!(r.answers[0].code, E0610::A02);
        assert_eq!(
            r.view[0].articles,
            articles(&["1-02-0-001", "1-02-0-015"]),
            "{r:?}"
        );
    }

    #[test]
    fn our_view_keeps_the_price_system_of_the_grid_operator() {
        let cases: &[(&[&str], &str)] = &[
            (&["1-01-7", "1-08-4-001"], "1-01-9-001"),
            (&["1-01-6"], "1-01-9-002"),
            (&["1-03-7"], "1-03-9"),
            (&["1-03-6"], "1-03-8"),
            (&["1-07-1"], "1-07-4-001"),
            (PLAIN, "1-02-0-015"),
        ];
        for (ids, module_1) in cases {
            let with = with_modules(&articles(ids), &[Module1]);
            assert_eq!(with.last().unwrap(), &Article::ours(module_1), "{ids:?}");
        }
        assert_eq!(Article::ours("1-03-9").qualifier, "Z10");
        assert_eq!(Article::ours("1-02-0-015").qualifier, "Z09");
        // Modul 2 has its own Arbeitspreis; Modul 1 und 3 adds HT and NT.
        assert_eq!(
            with_modules(&articles(MODUL_1), &[Module2]),
            articles(&["1-02-0-001", "1-02-0-016"])
        );
        assert_eq!(
            with_modules(&articles(PLAIN), &[Module1, Module3]),
            articles(&[
                "1-02-0-001",
                "1-02-0-002",
                "1-02-0-015",
                "1-02-0-017",
                "1-02-0-018"
            ])
        );
    }
}
