//! Value checks: presence, format (character class and length) and codes of data elements,
//! with a fast path ([`elements_ok`], [`value_ok`]) that decides the common case without
//! allocating, and [`check_value`], which names what is wrong. Also the value keys that code
//! lists and AHB conditions are compared by.

use super::mig_tables::{Codes, ComponentTable, ElementTable, MigTables};
use super::UNESCAPE_BUFFER;
use crate::edifact::tokens::{unescape, unescape_in, ComponentSpan};
use crate::edifact::Delimiters;
use crate::grammar::mig::{CharClass, SimpleDef, Status};

/// True when no data element of a segment (matched to `position`) has anything to report:
/// the common case of [`Matcher::element_findings`] in one pass over the parts, without
/// allocating. False where that finds something, or where a value needs [`check_value`] to
/// decide.
///
/// An element without any value is only checked for being required. In an element with a
/// value, a non-empty component must be used and pass [`value_ok`], every required component
/// must be non-empty, and there must be no more components than the MIG defines.
///
/// [`Matcher::element_findings`]: super::matcher::Matcher::element_findings
#[inline]
pub(super) fn elements_ok(
    tables: &MigTables,
    position: usize,
    parts: &[ComponentSpan],
    raw: &[u8],
    delimiters: &Delimiters,
    utf8: bool,
) -> bool {
    let Some(&position) = tables.positions.get(position) else {
        return false;
    };
    let first = position.first as usize;
    let Some(elements) = tables.elements.get(first..first + position.count as usize) else {
        return false;
    };
    if !position.small {
        return false;
    }
    // Elements with a value; the element being read, its non-empty components, and whether
    // it has more components than defined.
    let mut with_value = 0u64;
    let (mut current, mut filled, mut surplus) = (0usize, 0u64, false);
    let mut element = None::<&ElementTable>;
    for q in parts {
        let e = q.element as usize;
        if e != current {
            if filled != 0 {
                let el = element.expect("an element with a value was read");
                if surplus || el.required & !filled != 0 {
                    return false;
                }
                with_value |= 1 << (current - 1);
            }
            let Some(el) = e.checked_sub(1).and_then(|i| elements.get(i)) else {
                // More data elements than the MIG defines.
                return false;
            };
            (current, filled, surplus, element) = (e, 0, false, Some(el));
        }
        let el = element.expect("set above");
        let c = q.component as usize;
        let value = &raw[q.start as usize..q.end as usize];
        if c == 0 || c > el.count as usize {
            surplus = true;
            if !value.is_empty() {
                return false;
            }
            continue;
        }
        if value.is_empty() {
            continue;
        }
        let component = &tables.components[el.first as usize + c - 1];
        if el.unused || component.unused {
            return false;
        }
        let ok = if q.escaped {
            let mut buf = [0u8; UNESCAPE_BUFFER];
            let unescaped = unescape_in(value, delimiters.release, &mut buf);
            value_ok(tables, component, &unescaped, delimiters.decimal, utf8)
        } else {
            value_ok(tables, component, value, delimiters.decimal, utf8)
        };
        if !ok {
            return false;
        }
        filled |= 1 << (c - 1);
    }
    if filled != 0 {
        let el = element.expect("an element with a value was read");
        if surplus || el.required & !filled != 0 {
            return false;
        }
        with_value |= 1 << (current - 1);
    }
    position.required & !with_value == 0
}

/// The format and code checks of [`check_value`] for a present value of a used data element,
/// given unescaped, without allocating: true only when `check_value` finds nothing. False
/// where it would find something, or where it must decide (a UTF-8 value that is not ASCII,
/// codes longer than 8 bytes).
#[inline(always)]
fn value_ok(tables: &MigTables, c: &ComponentTable, raw: &[u8], decimal: u8, utf8: bool) -> bool {
    let length = match c.class {
        CharClass::Numeric => {
            let body = raw.strip_prefix(b"-").unwrap_or(raw);
            if body.first() == Some(&decimal) {
                // No digit before the decimal mark: left to `check_value`.
                return false;
            }
            let (mut digits, mut marks) = (0usize, 0usize);
            for &b in body {
                let digit = b.is_ascii_digit();
                let mark = b == decimal;
                // Neither (or both, with a digit as decimal mark): left to `check_value`.
                if digit == mark {
                    return false;
                }
                digits += usize::from(digit);
                marks += usize::from(mark);
            }
            if marks > 1 {
                return false;
            }
            digits
        }
        CharClass::Alphabetic => {
            if (utf8 && !raw.is_ascii()) || raw.iter().any(|b| b.is_ascii_digit()) {
                return false;
            }
            raw.len()
        }
        CharClass::Alphanumeric => {
            if utf8 && !raw.is_ascii() {
                return false;
            }
            raw.len()
        }
    };
    if length > c.max as usize || length < c.min as usize {
        return false;
    }
    match c.codes {
        Codes::Any => true,
        // Every code has a key, so a value without one (longer than 8 bytes) is no code.
        Codes::Keys(from, to) => {
            let Some(k) = pack(raw) else {
                return false;
            };
            let keys = &tables.codes[from as usize..to as usize];
            if keys.len() <= 8 {
                keys.contains(&k)
            } else {
                keys.binary_search(&k).is_ok()
            }
        }
        Codes::Def => false,
    }
}

/// [`code_key`](crate::grammar::mig::code_key) without a variable-length copy: the same key for the
/// same bytes.
#[inline]
fn pack(bytes: &[u8]) -> Option<u64> {
    if bytes.len() > 8 {
        return None;
    }
    let mut k = 0u64;
    for (j, &b) in bytes.iter().enumerate() {
        k |= u64::from(b) << (8 * j);
    }
    Some(k ^ ((bytes.len() as u64) << 60))
}

/// A key for up to 7 bytes: equal keys, equal bytes (unlike
/// [`code_key`](crate::grammar::mig::code_key) for 8 bytes, where the length bits overlap the last
/// byte). For comparisons that must be exact byte equality.
#[inline]
pub(in crate::grammar) fn short_key(bytes: &[u8]) -> Option<u64> {
    if bytes.len() > 7 {
        return None;
    }
    pack(bytes)
}

/// Checks one value against its definition: presence, format and codes.
pub(super) fn check_value(
    def: &SimpleDef,
    raw: &[u8],
    d: &Delimiters,
    utf8: bool,
) -> Option<(&'static str, String, u8)> {
    if raw.is_empty() {
        return def.status.is_required().then(|| {
            (
                "missing_element",
                format!("mandatory data element {} is missing", def.id),
                13,
            )
        });
    }
    if def.status == Status::N {
        return Some((
            "element_not_used",
            format!("data element {} is not used here", def.id),
            12,
        ));
    }
    let value = unescape(raw, d.release);
    let f = def.format;
    let (length, bad_type) = match f.class {
        CharClass::Numeric => {
            // Digits count; a leading minus sign and one decimal mark do not (ISO 9735-1 §10).
            let body = value.strip_prefix(b"-").unwrap_or(&value);
            // The decimal mark is the one the UNA names (default `.`): the other one is an
            // invalid decimal notation (DE0085 19), and a mark needs a digit before it (38).
            let other = if d.decimal == b',' { b'.' } else { b',' };
            if body.contains(&other) && d.decimal != other {
                return Some((
                    "invalid_decimal_notation",
                    format!(
                        "data element {} uses {:?} as decimal mark, the interchange declares {:?}",
                        def.id, other as char, d.decimal as char
                    ),
                    19,
                ));
            }
            if body.first() == Some(&d.decimal) {
                return Some((
                    "missing_digit_before_decimal_mark",
                    format!(
                        "data element {} has no digit before the decimal mark",
                        def.id
                    ),
                    38,
                ));
            }
            let marks = body.iter().filter(|&&b| b == d.decimal).count();
            let digits = body.iter().filter(|b| b.is_ascii_digit()).count();
            (digits, digits + marks != body.len() || marks > 1)
        }
        CharClass::Alphabetic => {
            let n = if utf8 {
                String::from_utf8_lossy(&value).chars().count()
            } else {
                value.len()
            };
            (n, value.iter().any(|b| b.is_ascii_digit()))
        }
        CharClass::Alphanumeric => (
            if utf8 {
                String::from_utf8_lossy(&value).chars().count()
            } else {
                value.len()
            },
            false,
        ),
    };
    if bad_type {
        return Some((
            "invalid_character_type",
            format!(
                "data element {} must be {}, found {:?}",
                def.id,
                f,
                String::from_utf8_lossy(&value)
            ),
            37,
        ));
    }
    if length > f.max as usize {
        return Some((
            "value_too_long",
            format!("data element {} is longer than {} ({length})", def.id, f),
            39,
        ));
    }
    if length < f.min as usize {
        return Some((
            "value_too_short",
            format!("data element {} is shorter than {} ({length})", def.id, f),
            40,
        ));
    }
    if !def.codes.is_empty() && !def.allows_code(&value) {
        return Some((
            "code_not_allowed",
            format!(
                "code {:?} is not allowed in data element {} (allowed: {})",
                String::from_utf8_lossy(&value),
                def.id,
                def.codes.join(", ")
            ),
            12,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::mig::code_key;

    #[test]
    fn packed_keys_are_the_code_keys_and_short_keys_are_exact() {
        for v in [
            &b""[..],
            b"A",
            b"A\0",
            b"Z13",
            b"12345678",
            b"123456789",
            b"\xff\x00",
        ] {
            assert_eq!(pack(v), code_key(v), "{v:?}");
        }
        // Keys of different byte strings differ up to 7 bytes; at 8 they may not.
        assert_eq!(code_key(b"ABC"), code_key(b"ABC\0\0\0\0\xb0"));
        assert_ne!(short_key(b"ABC"), short_key(b"ABC\0\0\0\0\xb0"));
        assert_eq!(short_key(b"ABC\0\0\0\0\xb0"), None);
        assert_ne!(short_key(b"ABC"), short_key(b"ABC\0"));
    }
}
