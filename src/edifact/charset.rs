//! Syntax identifiers (UNB S001) and their character repertoires.
//!
//! BDEW interchanges use `UNOC:3`, which means ISO 8859-1 on the wire (EDI@Energy "Allgemeine
//! Festlegungen"; every file of the corpus). Values are kept as raw bytes in the tree and decoded
//! to Rust strings on access, so a parse never allocates for text it is not asked for.

use std::borrow::Cow;
use std::fmt;

/// The character repertoire named by the syntax identifier (UNB S001 DE0001).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Charset {
    /// `UNOA`: level A, upper-case letters, digits and a few signs (ISO 646 subset).
    Unoa,
    /// `UNOB`: level B, the printable characters of ISO 646 (upper and lower case).
    Unob,
    /// `UNOC`: ISO 8859-1 (Latin-1), the BDEW choice: German ä ö ü ß are single bytes.
    Unoc,
    /// `UNOD`: ISO 8859-2 (Latin-2).
    Unod,
    /// `UNOE`: ISO 8859-5 (Cyrillic).
    Unoe,
    /// `UNOW`: ISO 10646-1 in UTF-8 (syntax version 4).
    Unow,
    /// `UNOY`: ISO 10646-1 without code extension (syntax version 4). Read and written as UTF-8:
    /// the service segments of such interchanges are single-byte ASCII, which only an 8-bit
    /// transformation format keeps readable.
    Unoy,
}

impl Charset {
    /// Reads DE0001.
    pub fn from_identifier(id: &[u8]) -> Option<Charset> {
        Some(match id {
            b"UNOA" => Charset::Unoa,
            b"UNOB" => Charset::Unob,
            b"UNOC" => Charset::Unoc,
            b"UNOD" => Charset::Unod,
            b"UNOE" => Charset::Unoe,
            b"UNOW" => Charset::Unow,
            b"UNOY" => Charset::Unoy,
            _ => return None,
        })
    }

    /// DE0001 as written in UNB.
    pub fn identifier(self) -> &'static str {
        match self {
            Charset::Unoa => "UNOA",
            Charset::Unob => "UNOB",
            Charset::Unoc => "UNOC",
            Charset::Unod => "UNOD",
            Charset::Unoe => "UNOE",
            Charset::Unow => "UNOW",
            Charset::Unoy => "UNOY",
        }
    }

    /// True for the UTF-8 repertoires.
    pub fn is_utf8(self) -> bool {
        matches!(self, Charset::Unow | Charset::Unoy)
    }

    /// True when `byte` belongs to the repertoire as a data character (not counting the
    /// delimiters, which the caller allows separately). For UTF-8 repertoires this only checks
    /// for control characters; UTF-8 well-formedness is checked once per interchange.
    #[inline]
    pub fn allows(self, byte: u8) -> bool {
        match self {
            Charset::Unoa => is_level_a(byte),
            Charset::Unob => (0x20..=0x7E).contains(&byte),
            // ISO 8859-n: the graphic characters G0 (0x20-0x7E) and G1 (0xA0-0xFF); C0, DEL and
            // C1 are control functions, not characters.
            Charset::Unoc | Charset::Unod | Charset::Unoe => !is_8859_control(byte),
            Charset::Unow | Charset::Unoy => byte >= 0x20 && byte != 0x7F,
        }
    }

    /// Index of the first byte in `data` the repertoire does not allow, skipping bytes that
    /// `also_allowed` accepts (the delimiters). For checking single values; the parser checks
    /// whole interchanges in its block scanner.
    #[inline]
    pub fn first_invalid(self, data: &[u8], also_allowed: impl Fn(u8) -> bool) -> Option<usize> {
        match self {
            Charset::Unoc | Charset::Unod | Charset::Unoe | Charset::Unow | Charset::Unoy => {
                let suspicious = data.iter().fold(false, |acc, &b| acc | is_8859_control(b));
                if suspicious {
                    self.scan(data, &also_allowed)
                } else {
                    None
                }
            }
            Charset::Unoa | Charset::Unob => self.scan(data, &also_allowed),
        }
    }

    fn scan(self, data: &[u8], also_allowed: &impl Fn(u8) -> bool) -> Option<usize> {
        data.iter()
            .position(|&b| !self.allows(b) && !also_allowed(b))
    }

    /// Decodes raw value bytes (already unescaped) to text. Never fails for bytes that passed
    /// [`Charset::first_invalid`] and, for UTF-8 repertoires, the interchange's UTF-8 check.
    pub fn decode(self, bytes: &[u8]) -> Cow<'_, str> {
        match self {
            Charset::Unoa | Charset::Unob => String::from_utf8_lossy(bytes),
            Charset::Unoc => match std::str::from_utf8(bytes) {
                Ok(s) if bytes.is_ascii() => Cow::Borrowed(s),
                _ => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
            },
            Charset::Unod => decode_with(encoding_rs::ISO_8859_2, bytes),
            Charset::Unoe => decode_with(encoding_rs::ISO_8859_5, bytes),
            Charset::Unow | Charset::Unoy => String::from_utf8_lossy(bytes),
        }
    }

    /// Encodes text for this repertoire, or names the first character it cannot carry.
    pub fn encode(self, text: &str) -> Result<Cow<'_, [u8]>, Unrepresentable> {
        let unrepresentable = |(index, ch): (usize, char)| Unrepresentable {
            ch,
            index,
            charset: self,
        };
        match self {
            Charset::Unow | Charset::Unoy => {
                if let Some(bad) = text
                    .char_indices()
                    .find(|&(_, c)| (c as u32) < 0x20 || c == '\u{7f}')
                {
                    return Err(unrepresentable(bad));
                }
                Ok(Cow::Borrowed(text.as_bytes()))
            }
            Charset::Unoa | Charset::Unob => {
                if let Some(bad) = text
                    .char_indices()
                    .find(|&(_, c)| !c.is_ascii() || !self.allows(c as u8))
                {
                    return Err(unrepresentable(bad));
                }
                Ok(Cow::Borrowed(text.as_bytes()))
            }
            Charset::Unoc => {
                if let Some(bad) = text
                    .char_indices()
                    .find(|&(_, c)| (c as u32) > 0xFF || !self.allows(c as u8))
                {
                    return Err(unrepresentable(bad));
                }
                if text.is_ascii() {
                    Ok(Cow::Borrowed(text.as_bytes()))
                } else {
                    Ok(Cow::Owned(text.chars().map(|c| c as u8).collect()))
                }
            }
            Charset::Unod | Charset::Unoe => {
                let encoding = if self == Charset::Unod {
                    encoding_rs::ISO_8859_2
                } else {
                    encoding_rs::ISO_8859_5
                };
                let mut out = Vec::with_capacity(text.len());
                for (index, ch) in text.char_indices() {
                    let mut buf = [0u8; 4];
                    let (bytes, _, had_errors) = encoding.encode(ch.encode_utf8(&mut buf));
                    if had_errors || bytes.len() != 1 || !self.allows(bytes[0]) {
                        return Err(unrepresentable((index, ch)));
                    }
                    out.push(bytes[0]);
                }
                Ok(Cow::Owned(out))
            }
        }
    }
}

impl fmt::Display for Charset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.identifier())
    }
}

/// A character that the chosen syntax identifier cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("character {ch:?} at byte {index} of the value is not in the {charset} repertoire")]
pub struct Unrepresentable {
    /// The character.
    pub ch: char,
    /// Its byte index in the text.
    pub index: usize,
    /// The repertoire.
    pub charset: Charset,
}

fn decode_with<'b>(encoding: &'static encoding_rs::Encoding, bytes: &'b [u8]) -> Cow<'b, str> {
    let (text, _) = encoding.decode_without_bom_handling(bytes);
    text
}

#[inline]
fn is_8859_control(b: u8) -> bool {
    b < 0x20 || b.wrapping_sub(0x7F) < 0x21
}

/// ISO 9735 level A character set: A-Z, 0-9, space and `. , - ( ) / = ' + : ? ! " % & * ; < >`.
fn is_level_a(b: u8) -> bool {
    b.is_ascii_uppercase()
        || b.is_ascii_digit()
        || matches!(
            b,
            b' ' | b'.'
                | b','
                | b'-'
                | b'('
                | b')'
                | b'/'
                | b'='
                | b'\''
                | b'+'
                | b':'
                | b'?'
                | b'!'
                | b'"'
                | b'%'
                | b'&'
                | b'*'
                | b';'
                | b'<'
                | b'>'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unoc_decodes_latin1_umlauts() {
        let bytes = b"M\xfcller Stra\xdfe";
        assert_eq!(Charset::Unoc.decode(bytes), "Müller Straße");
        assert_eq!(
            Charset::Unoc.encode("Müller Straße").unwrap().as_ref(),
            bytes
        );
    }

    #[test]
    fn ascii_values_decode_without_allocating() {
        assert!(matches!(Charset::Unoc.decode(b"Z91"), Cow::Borrowed("Z91")));
    }

    #[test]
    fn unoc_refuses_characters_outside_latin1() {
        let err = Charset::Unoc.encode("Łódź").unwrap_err();
        assert_eq!(err.ch, 'Ł');
        assert_eq!(err.index, 0);
    }

    #[test]
    fn unod_and_unoe_round_trip_their_letters() {
        let polish = "Łódź żółć";
        let bytes = Charset::Unod.encode(polish).unwrap().into_owned();
        assert_eq!(bytes.len(), polish.chars().count());
        assert_eq!(Charset::Unod.decode(&bytes), polish);
        let russian = "Москва";
        let bytes = Charset::Unoe.encode(russian).unwrap().into_owned();
        assert_eq!(Charset::Unoe.decode(&bytes), russian);
    }

    #[test]
    fn unoa_is_upper_case_only() {
        assert!(Charset::Unoa.allows(b'A'));
        assert!(!Charset::Unoa.allows(b'a'));
        assert!(Charset::Unob.allows(b'a'));
        assert!(Charset::Unoa.encode("abc").is_err());
    }

    #[test]
    fn finds_the_first_control_character_past_a_clean_chunk() {
        let mut data = vec![b'A'; 40];
        data[33] = 0x85;
        assert_eq!(Charset::Unoc.first_invalid(&data, |_| false), Some(33));
        assert_eq!(Charset::Unoc.first_invalid(&data[..33], |_| false), None);
        data[33] = 0x1F;
        assert_eq!(Charset::Unoc.first_invalid(&data, |b| b == 0x1F), None);
    }
}
