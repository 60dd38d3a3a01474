//! Answer codes as data (`grammars/codes/answer_codes.txt`): their meaning in German and
//! English for the API, and what each does to an order.

use std::collections::HashMap;
use std::sync::OnceLock;

/// What an answer code does to the order it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The order goes on.
    Accepted,
    /// A reduction ends as rejected.
    Rejected,
    /// A meter order is parked with the reason.
    Blocked,
}

struct Entry {
    outcome: Outcome,
    german: String,
    english: String,
}

fn table() -> &'static HashMap<(String, String), Entry> {
    static TABLE: OnceLock<HashMap<(String, String), Entry>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let text = crate::grammar::embedded_file("codes/answer_codes.txt")
            .expect("grammars/codes/answer_codes.txt is embedded");
        parse(text).unwrap_or_else(|e| panic!("{e}"))
    })
}

fn parse(text: &str) -> Result<HashMap<(String, String), Entry>, String> {
    let mut map = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("source ") {
            continue;
        }
        let err = || {
            format!(
                "grammars/codes/answer_codes.txt:{}: cannot read {line:?}",
                n + 1
            )
        };
        let mut parts = line.split(" | ");
        let head: Vec<&str> = parts.next().ok_or_else(err)?.split_whitespace().collect();
        let (german, english) = (parts.next().ok_or_else(err)?, parts.next().ok_or_else(err)?);
        let [tree, code, outcome] = head[..] else {
            return Err(err());
        };
        let outcome = match outcome {
            "accepted" => Outcome::Accepted,
            "rejected" => Outcome::Rejected,
            "blocked" => Outcome::Blocked,
            _ => return Err(err()),
        };
        map.insert(
            (tree.to_string(), code.to_string()),
            Entry {
                outcome,
                german: german.to_string(),
                english: english.to_string(),
            },
        );
    }
    Ok(map)
}

/// The German and English meaning of `code` in the decision tree `tree` (`E_0595`, `E_0250`,
/// `E_0283`, `E_0286`, `IFTSTA_21025` for the 21025 codes without EBD, or `APERAK` for ERC
/// codes; a CONTRL syntax error code under `APERAK` is named as
/// such).
pub fn reason_text(tree: &str, code: &str) -> (&'static str, &'static str) {
    match table().get(&(tree.to_string(), code.to_string())) {
        Some(e) => (e.german.as_str(), e.english.as_str()),
        None if tree == "APERAK"
            && !code.is_empty()
            && code.chars().all(|c| c.is_ascii_digit()) =>
        {
            ("Syntaxfehler (CONTRL)", "syntax error (CONTRL)")
        }
        None => ("unbekannter Code", "unknown code"),
    }
}

/// What `code` of `tree` does to the order; codes not listed count as a refusal.
pub fn outcome(tree: &str, code: &str) -> Option<Outcome> {
    table()
        .get(&(tree.to_string(), code.to_string()))
        .map(|e| e.outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_table_reads_and_knows_the_codes() {
        assert_eq!(outcome("E_0595", "A20"), Some(Outcome::Accepted));
        assert_eq!(outcome("E_0286", "A01"), Some(Outcome::Blocked));
        assert_eq!(
            reason_text("IFTSTA_21025", "Z75").1,
            "failed: communication failure"
        );
        assert_eq!(outcome("E_0250", "A02"), Some(Outcome::Accepted));
        assert_eq!(outcome("E_0283", "A06"), Some(Outcome::Accepted));
        assert_eq!(
            reason_text("APERAK", "Z33").1,
            "referenced business transaction unknown"
        );
        assert_eq!(reason_text("APERAK", "29").0, "Syntaxfehler (CONTRL)");
        assert_eq!(reason_text("E_9999", "A01").1, "unknown code");
    }
}
