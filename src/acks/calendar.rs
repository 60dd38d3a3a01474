//! Working days of the market communication and the deadlines of acknowledgements, both read
//! from data (`grammars/calendar/holidays.txt`, `grammars/calendar/deadlines.txt`).
//!
//! Times are UTC in and out; "12 Uhr gesetzlicher deutscher Zeit" is computed with the EU
//! summer-time rule (CEST from the last Sunday of March 01:00 UTC to the last Sunday of
//! October 01:00 UTC), so no time-zone database is needed.

use std::sync::OnceLock;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Weekday};

use crate::grammar::GrammarFileError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Holiday {
    Fixed {
        month: u32,
        day: u32,
        from: Option<i32>,
    },
    Easter(i64),
    Repentance,
    Date(NaiveDate),
}

/// The working-day calendar (BDEW: not Saturday, Sunday, a holiday of any Land, 24.12., 31.12.).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    holidays: Vec<(Holiday, String)>,
}

/// Easter Sunday (Gregorian, anonymous algorithm of Meeus/Jones/Butcher).
pub fn easter_sunday(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32).expect("valid Easter date")
}

impl Calendar {
    /// The embedded calendar.
    pub fn embedded() -> &'static Calendar {
        static CALENDAR: OnceLock<Calendar> = OnceLock::new();
        CALENDAR.get_or_init(|| {
            let text = crate::grammar::embedded_file("calendar/holidays.txt")
                .expect("grammars/calendar/holidays.txt is embedded");
            Calendar::parse(text).unwrap_or_else(|e| panic!("{e}"))
        })
    }

    /// Reads a holiday file.
    pub fn parse(text: &str) -> Result<Calendar, GrammarFileError> {
        let mut holidays = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() || line.starts_with("source ") {
                continue;
            }
            let err = |message: String| GrammarFileError {
                file: "calendar/holidays.txt".into(),
                line: n + 1,
                message,
            };
            let mut words = line.splitn(3, ' ');
            let kind = words.next().unwrap_or("");
            let arg = words.next().unwrap_or("");
            let name = words.next().unwrap_or("").to_string();
            let holiday = match kind {
                "fixed" => {
                    let (m, d) = arg
                        .split_once('-')
                        .ok_or_else(|| err(format!("bad day {arg:?}")))?;
                    let from = name
                        .rsplit_once(" from ")
                        .and_then(|(_, y)| y.trim().parse().ok());
                    Holiday::Fixed {
                        month: m.parse().map_err(|_| err(format!("bad month {m:?}")))?,
                        day: d.parse().map_err(|_| err(format!("bad day {d:?}")))?,
                        from,
                    }
                }
                "easter" => Holiday::Easter(
                    arg.parse()
                        .map_err(|_| err(format!("bad offset {arg:?}")))?,
                ),
                "repentance" => Holiday::Repentance,
                "date" => Holiday::Date(
                    NaiveDate::parse_from_str(arg, "%Y-%m-%d")
                        .map_err(|_| err(format!("bad date {arg:?}")))?,
                ),
                other => return Err(err(format!("unknown kind {other:?}"))),
            };
            let name = if kind == "repentance" {
                format!("{arg} {name}")
            } else {
                name
            };
            holidays.push((holiday, name.trim().to_string()));
        }
        Ok(Calendar { holidays })
    }

    /// The holiday on `date`, if any.
    pub fn holiday(&self, date: NaiveDate) -> Option<&str> {
        let year = date.year();
        self.holidays
            .iter()
            .find(|(h, _)| match h {
                Holiday::Fixed { month, day, from } => {
                    date.month() == *month && date.day() == *day && from.is_none_or(|f| year >= f)
                }
                Holiday::Easter(offset) => date == easter_sunday(year) + Duration::days(*offset),
                Holiday::Repentance => {
                    // The Wednesday before 23 November: between 16 and 22 November.
                    date.month() == 11
                        && (16..=22).contains(&date.day())
                        && date.weekday() == Weekday::Wed
                }
                Holiday::Date(d) => *d == date,
            })
            .map(|(_, name)| name.as_str())
    }

    /// True for a Werktag.
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && self.holiday(date).is_none()
    }

    /// The first working day after `date`.
    pub fn next_working_day(&self, date: NaiveDate) -> NaiveDate {
        let mut d = date + Duration::days(1);
        while !self.is_working_day(d) {
            d += Duration::days(1);
        }
        d
    }

    /// `date` plus `n` working days (the day itself does not count, GPKE §7 / §187 BGB).
    pub fn add_working_days(&self, date: NaiveDate, n: u32) -> NaiveDate {
        (0..n).fold(date, |d, _| self.next_working_day(d))
    }

    /// Working days strictly between `from` and `to`, plus `to` itself if it is one.
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate) -> u32 {
        let mut n = 0;
        let mut d = from;
        while d < to {
            d = self.next_working_day(d);
            if d <= to {
                n += 1;
            }
        }
        n
    }
}

fn last_sunday(year: i32, month: u32) -> NaiveDate {
    let mut d =
        NaiveDate::from_ymd_opt(year, month + 1, 1).expect("valid date") - Duration::days(1);
    while d.weekday() != Weekday::Sun {
        d -= Duration::days(1);
    }
    d
}

/// Offset of German legal time from UTC at the UTC instant `utc`: +2 h in summer, +1 h else.
pub fn berlin_offset(utc: NaiveDateTime) -> Duration {
    let year = utc.year();
    let one = NaiveTime::from_hms_opt(1, 0, 0).expect("01:00");
    let summer_from = last_sunday(year, 3).and_time(one);
    let summer_until = last_sunday(year, 10).and_time(one);
    if utc >= summer_from && utc < summer_until {
        Duration::hours(2)
    } else {
        Duration::hours(1)
    }
}

/// German legal time of a UTC instant.
pub fn berlin_local(utc: NaiveDateTime) -> NaiveDateTime {
    utc + berlin_offset(utc)
}

/// The UTC instant of a German legal time (for times away from the switch hours, like 12:00).
pub fn berlin_to_utc(local: NaiveDateTime) -> NaiveDateTime {
    let guess = local - Duration::hours(1);
    local - berlin_offset(guess)
}

/// Which acknowledgement a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// The APERAK for a received business message.
    Aperak,
    /// The CONTRL for a received interchange.
    Contrl,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DueRule {
    Within(Duration),
    NextDay(NaiveTime),
    NextWorkingDay(NaiveTime),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DeadlineRule {
    kind: Deadline,
    types: Option<Vec<String>>,
    on_saturday: bool,
    rule: DueRule,
}

/// The acknowledgement deadlines, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineRules {
    rules: Vec<DeadlineRule>,
    /// What the file says is unverified.
    pub unverified: Vec<String>,
}

impl DeadlineRules {
    /// The embedded rules.
    pub fn embedded() -> &'static DeadlineRules {
        static RULES: OnceLock<DeadlineRules> = OnceLock::new();
        RULES.get_or_init(|| {
            let text = crate::grammar::embedded_file("calendar/deadlines.txt")
                .expect("grammars/calendar/deadlines.txt is embedded");
            DeadlineRules::parse(text).unwrap_or_else(|e| panic!("{e}"))
        })
    }

    /// Reads a deadline file.
    pub fn parse(text: &str) -> Result<DeadlineRules, GrammarFileError> {
        let mut rules = Vec::new();
        let mut unverified = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            let err = |message: String| GrammarFileError {
                file: "calendar/deadlines.txt".into(),
                line: n + 1,
                message,
            };
            if line.is_empty() || line.starts_with("source ") {
                continue;
            }
            if let Some(rest) = line.strip_prefix("unverified ") {
                unverified.push(rest.to_string());
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let (kind, types, rest) = match words.as_slice() {
                ["deadline", kind, types, rest @ ..] => (*kind, *types, rest),
                _ => return Err(err(format!("cannot read {line:?}"))),
            };
            let kind = match kind {
                "aperak" => Deadline::Aperak,
                "contrl" => Deadline::Contrl,
                other => return Err(err(format!("unknown kind {other:?}"))),
            };
            let (on_saturday, rest) = match rest {
                ["on-saturday", rest @ ..] => (true, rest),
                rest => (false, rest),
            };
            let time = |s: &str| {
                NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| err(format!("bad time {s:?}")))
            };
            let rule = match rest {
                ["within", span] => {
                    let (number, unit) = span.split_at(span.len() - 1);
                    let number: i64 = number
                        .parse()
                        .map_err(|_| err(format!("bad span {span:?}")))?;
                    DueRule::Within(match unit {
                        "m" => Duration::minutes(number),
                        "h" => Duration::hours(number),
                        _ => return Err(err(format!("bad unit in {span:?}"))),
                    })
                }
                ["next-day", t] => DueRule::NextDay(time(t)?),
                ["next-working-day", t] => DueRule::NextWorkingDay(time(t)?),
                _ => return Err(err(format!("cannot read rule in {line:?}"))),
            };
            rules.push(DeadlineRule {
                kind,
                types: (types != "*").then(|| types.split(',').map(str::to_string).collect()),
                on_saturday,
                rule,
            });
        }
        Ok(DeadlineRules { rules, unverified })
    }

    /// When the acknowledgement of `kind` for a message of `message_type` received at
    /// `received` (UTC) is due (UTC), or `None` if no rule covers it.
    pub fn due(
        &self,
        kind: Deadline,
        message_type: &str,
        received: NaiveDateTime,
        calendar: &Calendar,
    ) -> Option<NaiveDateTime> {
        let local = berlin_local(received);
        let saturday = local.weekday() == Weekday::Sat;
        let rule = self.rules.iter().find(|r| {
            r.kind == kind
                && r.types
                    .as_ref()
                    .is_none_or(|t| t.iter().any(|x| x == message_type))
                && (!r.on_saturday || saturday)
        })?;
        Some(match rule.rule {
            DueRule::Within(span) => received + span,
            DueRule::NextDay(t) => berlin_to_utc((local.date() + Duration::days(1)).and_time(t)),
            DueRule::NextWorkingDay(t) => {
                berlin_to_utc(calendar.next_working_day(local.date()).and_time(t))
            }
        })
    }

    /// True when an acknowledgement expected for something received (by the partner) at
    /// `received` is still missing at `now`.
    pub fn is_overdue(
        &self,
        kind: Deadline,
        message_type: &str,
        received: NaiveDateTime,
        now: NaiveDateTime,
        calendar: &Calendar,
    ) -> bool {
        self.due(kind, message_type, received, calendar)
            .is_some_and(|due| now > due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        day(y, m, d).and_hms_opt(h, min, 0).unwrap()
    }

    #[test]
    fn easter_and_the_holidays_that_hang_on_it() {
        assert_eq!(easter_sunday(2026), day(2026, 4, 5));
        assert_eq!(easter_sunday(2025), day(2025, 4, 20));
        let c = Calendar::embedded();
        assert_eq!(c.holiday(day(2026, 4, 3)), Some("Karfreitag"));
        assert_eq!(
            c.holiday(day(2026, 6, 4)),
            Some("Fronleichnam (BW, BY, HE, NW, RP, SL)")
        );
        assert!(c.holiday(day(2026, 11, 18)).unwrap().starts_with("Buß"));
        assert!(
            c.holiday(day(2018, 3, 8)).is_none(),
            "Frauentag only from 2019"
        );
        assert!(c.holiday(day(2026, 3, 9)).is_none());
    }

    #[test]
    fn christmas_eve_and_new_years_eve_are_no_working_days() {
        let c = Calendar::embedded();
        // Wednesday 23.12.2026 → next working day is Monday 28.12.? No: 24, 25, 26 are off,
        // 27 is a Sunday, 28 is a Monday.
        assert_eq!(c.next_working_day(day(2026, 12, 23)), day(2026, 12, 28));
        assert!(!c.is_working_day(day(2026, 12, 31)));
        assert_eq!(c.next_working_day(day(2026, 12, 30)), day(2027, 1, 4));
        assert_eq!(c.add_working_days(day(2026, 11, 20), 2), day(2026, 11, 24));
        assert_eq!(
            c.working_days_between(day(2026, 11, 20), day(2026, 11, 24)),
            2
        );
    }

    #[test]
    fn german_legal_time_follows_summer_time() {
        assert_eq!(berlin_offset(at(2026, 3, 29, 0, 59)), Duration::hours(1));
        assert_eq!(berlin_offset(at(2026, 3, 29, 1, 0)), Duration::hours(2));
        assert_eq!(berlin_offset(at(2026, 10, 25, 0, 59)), Duration::hours(2));
        assert_eq!(berlin_offset(at(2026, 10, 25, 1, 0)), Duration::hours(1));
        assert_eq!(berlin_to_utc(at(2026, 7, 1, 12, 0)), at(2026, 7, 1, 10, 0));
        assert_eq!(
            berlin_to_utc(at(2026, 12, 1, 12, 0)),
            at(2026, 12, 1, 11, 0)
        );
    }

    #[test]
    fn aperak_deadlines() {
        let (r, c) = (DeadlineRules::embedded(), Calendar::embedded());
        // ORDERS on a Monday: 45 minutes.
        assert_eq!(
            r.due(Deadline::Aperak, "ORDERS", at(2026, 11, 23, 9, 0), c),
            Some(at(2026, 11, 23, 9, 45))
        );
        // UTILMD on a Saturday (local): Sunday 12:00 German time = 11:00 UTC in winter.
        assert_eq!(
            r.due(Deadline::Aperak, "UTILMD", at(2026, 11, 21, 9, 0), c),
            Some(at(2026, 11, 22, 11, 0))
        );
        // ORDRSP on Friday 23:30 UTC (Saturday 00:30 local): next working day 12:00 = Monday.
        assert_eq!(
            r.due(Deadline::Aperak, "ORDRSP", at(2026, 11, 20, 23, 30), c),
            Some(at(2026, 11, 23, 11, 0))
        );
        // ORDRSP on Tuesday 17.11.2026: Wednesday is Buß- und Bettag, so Thursday.
        assert_eq!(
            r.due(Deadline::Aperak, "ORDRSP", at(2026, 11, 17, 10, 0), c),
            Some(at(2026, 11, 19, 11, 0))
        );
        assert!(r.is_overdue(
            Deadline::Contrl,
            "ORDERS",
            at(2026, 11, 23, 9, 0),
            at(2026, 11, 23, 15, 1),
            c
        ));
        assert!(!r.is_overdue(
            Deadline::Contrl,
            "ORDERS",
            at(2026, 11, 23, 9, 0),
            at(2026, 11, 23, 15, 0),
            c
        ));
        assert_eq!(r.unverified.len(), 1);
    }
}
