//! Stops a gzip bomb at `[as4] max_payload_bytes`, before asx-rs decompresses anything (issue
//! 15, AS4 finding 4).
//!
//! asx-rs 0.16.2 inflates every payload declared compressed inside its verification, up to a
//! fixed ceiling of 128 MiB (`crypto/compression.rs`, no setting), and only then could our
//! size check run: a bomb of about 200 KiB on the wire cost about 130 MiB of memory
//! (measured, `tests/as4_e2e.rs`). So before a request goes to asx-rs, [`check`] decrypts with our key those encrypted parts that could
//! inflate beyond the limit at all (a DEFLATE byte yields at most 1032 bytes) and inflates
//! them into a small buffer that is counted and thrown away, stopping at the limit. Memory:
//! the compressed part once more and 64 KiB.
//!
//! It reads exactly the shape asx-rs accepts under the BDEW profile (one `xenc:EncryptedKey`
//! with ECDH-ES, ConcatKDF over SHA-256 and an AES key wrap; AES-GCM parts, IV ‖ ciphertext ‖
//! tag; transport.md §1.5) and verifies nothing: the signature, the sender and everything else
//! stay asx-rs's, afterwards. A request it cannot read ([`Verdict::Unread`]: another shape, a
//! key that does not unwrap, a part that does not decrypt) goes on to asx-rs unchanged, which
//! refuses such a request before it decompresses anything. A refusal here rests on a part that
//! decrypted under its GCM tag and did inflate beyond the limit.

use std::io::Read;

use openssl::bn::BigNumContext;
use openssl::derive::Deriver;
use openssl::ec::{EcKey, EcPoint};
use openssl::hash::{Hasher, MessageDigest};
use openssl::pkey::{PKey, Private};
use openssl::symm::Cipher;

/// zlib's bound on the DEFLATE expansion ratio: one compressed byte yields at most 1032 bytes
/// (a 258-byte match per two bits, RFC 1951); a part smaller than the limit by this factor
/// cannot exceed it and is not opened.
const MAX_DEFLATE_RATIO: u64 = 1032;
/// AES-GCM part layout of the SwA ciphertext transform: 12-byte IV before, 16-byte tag after.
const GCM_IV: usize = 12;
const GCM_TAG: usize = 16;
/// asx-rs's limits on a SOAP envelope (`xml::XmlLimits::ENVELOPE`): a larger or deeper one is
/// refused by it before any decryption, so it is not read here either (roxmltree recurses
/// once per nesting level: the depth is checked first).
const MAX_ENVELOPE_BYTES: usize = 4 * 1024 * 1024;
const MAX_DEPTH: usize = 64;
const MAX_NODES: u32 = 20_000;
/// asx-rs's cap on the parts of one message (16 payloads and the SOAP root).
const MAX_PARTS: usize = 17;
/// The inflate buffer.
const CHUNK: usize = 64 * 1024;

const XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
const XENC11: &str = "http://www.w3.org/2009/xmlenc11#";
const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
const DSIG11: &str = "http://www.w3.org/2009/xmldsig11#";
const ECDH_ES: &str = "http://www.w3.org/2009/xmlenc11#ECDH-ES";
const CONCAT_KDF: &str = "http://www.w3.org/2009/xmlenc11#ConcatKDF";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";

/// The private key partners encrypt to (`[as4] encryption_key`), for [`check`]. `Debug`
/// prints nothing of it.
#[derive(Clone)]
pub struct DecryptionKey(PKey<Private>);

impl std::fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecryptionKey(..)")
    }
}

impl DecryptionKey {
    /// The key from its PEM; `None` unless it is an EC key (the BDEW profile's keys are
    /// brainpoolP256r1).
    pub fn from_pem(pem: &[u8]) -> Option<DecryptionKey> {
        let key = PKey::private_key_from_pem(pem).ok()?;
        key.ec_key().ok()?;
        Some(DecryptionKey(key))
    }
}

/// What [`check`] found (the receiver logs [`Verdict::Unread`] as a warning: a payload that
/// could be a bomb went to asx-rs unchecked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No part could inflate beyond the limit, or every one that could stayed within it.
    Within,
    /// This part (its Content-ID) inflates to more than the limit: decompression stopped
    /// there.
    TooLarge {
        /// The part's Content-ID.
        content_id: String,
    },
    /// Not read (why); asx-rs reads the request as it always did.
    Unread(&'static str),
}

/// Whether a request body of `body_len` bytes is too small for any part of it to inflate past
/// `limit` (every part is shorter than the body): then [`check`] has nothing to read, and the
/// receiver skips it.
pub fn cannot_exceed(body_len: usize, limit: u64) -> bool {
    (body_len as u64).saturating_mul(MAX_DEFLATE_RATIO) <= limit
}

/// Whether a payload of the AS4 request `body` (HTTP `content_type`) inflates to more than
/// `limit` bytes, read with `key`; CPU-bound (ECDH, AES-GCM, inflate): run it off the async
/// threads.
pub fn check(body: &[u8], content_type: &str, key: &DecryptionKey, limit: u64) -> Verdict {
    if mailparse::parse_content_type(content_type).mimetype != "multipart/related" {
        // No attachments: nothing asx-rs would inflate.
        return Verdict::Within;
    }
    let Some(parts) = mime_parts(body, content_type) else {
        return Verdict::Unread("the multipart/related body does not split into parts");
    };
    let Some((_, soap)) = parts.first() else {
        return Verdict::Unread("no parts");
    };
    // A part of n bytes carries at most n - 28 compressed bytes.
    let suspects: Vec<&(Option<String>, &[u8])> = parts[1..]
        .iter()
        .filter(|(_, b)| {
            (b.len().saturating_sub(GCM_IV + GCM_TAG) as u64) * MAX_DEFLATE_RATIO > limit
        })
        .collect();
    if suspects.is_empty() {
        return Verdict::Within;
    }
    let cek = match content_key(soap, key) {
        Ok(cek) => cek,
        Err(why) => return Verdict::Unread(why),
    };
    let cipher = match cek.len() {
        16 => Cipher::aes_128_gcm(),
        32 => Cipher::aes_256_gcm(),
        _ => return Verdict::Unread("the content key is neither AES-128 nor AES-256"),
    };
    for (content_id, blob) in suspects {
        if blob.len() < GCM_IV + GCM_TAG {
            continue;
        }
        let (iv, rest) = blob.split_at(GCM_IV);
        let (ciphertext, tag) = rest.split_at(rest.len() - GCM_TAG);
        let Ok(plain) = openssl::symm::decrypt_aead(cipher, &cek, Some(iv), &[], ciphertext, tag)
        else {
            // Not this key's part, or tampered: asx-rs refuses it (EBMS:0102).
            continue;
        };
        if plain.starts_with(&[0x1f, 0x8b]) && inflates_beyond(&plain, limit) {
            return Verdict::TooLarge {
                content_id: content_id.clone().unwrap_or_default(),
            };
        }
    }
    Verdict::Within
}

/// Whether the gzip stream `compressed` inflates to more than `limit` bytes: inflated chunk by
/// chunk and counted, stopped past the limit. Only its first member counts, as for asx-rs
/// (`flate2::read::GzDecoder`); a stream that breaks off is asx-rs's to refuse.
fn inflates_beyond(compressed: &[u8], limit: u64) -> bool {
    let mut decoder = flate2::read::GzDecoder::new(compressed);
    let mut buffer = vec![0u8; CHUNK];
    let mut total: u64 = 0;
    loop {
        match decoder.read(&mut buffer) {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                total += n as u64;
                if total > limit {
                    return true;
                }
            }
        }
    }
}

/// The content-encryption key of the one `xenc:EncryptedKey` of the SOAP envelope, unwrapped
/// with `key`.
fn content_key(soap: &[u8], key: &DecryptionKey) -> Result<Vec<u8>, &'static str> {
    if soap.len() > MAX_ENVELOPE_BYTES {
        return Err("the SOAP envelope is larger than asx-rs reads");
    }
    let text = std::str::from_utf8(soap).map_err(|_| "the SOAP envelope is not UTF-8")?;
    if nesting_depth(text.as_bytes()).is_none_or(|d| d > MAX_DEPTH) {
        return Err("the SOAP envelope nests deeper than asx-rs reads, or declares a DTD");
    }
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options)
        .map_err(|_| "the SOAP envelope is not well-formed")?;
    let mut keys = doc.descendants().filter(|n| is(n, XENC, "EncryptedKey"));
    let (Some(encrypted_key), None) = (keys.next(), keys.next()) else {
        return Err("not exactly one xenc:EncryptedKey");
    };
    let kek_len = match encrypted_key
        .children()
        .find(|n| is(n, XENC, "EncryptionMethod"))
        .and_then(|n| n.attribute("Algorithm"))
    {
        Some("http://www.w3.org/2001/04/xmlenc#kw-aes128") => 16,
        Some("http://www.w3.org/2001/04/xmlenc#kw-aes192") => 24,
        Some("http://www.w3.org/2001/04/xmlenc#kw-aes256") => 32,
        _ => return Err("the key is not wrapped with AES"),
    };
    let agreement = encrypted_key
        .descendants()
        .find(|n| is(n, XENC, "AgreementMethod"))
        .filter(|n| n.attribute("Algorithm") == Some(ECDH_ES))
        .ok_or("no ECDH-ES xenc:AgreementMethod")?;
    let derivation = child(agreement, XENC11, "KeyDerivationMethod")
        .filter(|n| n.attribute("Algorithm") == Some(CONCAT_KDF))
        .ok_or("no ConcatKDF key derivation")?;
    let params = child(derivation, XENC11, "ConcatKDFParams").ok_or("no ConcatKDFParams")?;
    if child(params, DS, "DigestMethod").and_then(|n| n.attribute("Algorithm")) != Some(SHA256) {
        return Err("the ConcatKDF digest is not SHA-256");
    }
    let mut other_info = Vec::new();
    for name in [
        "AlgorithmID",
        "PartyUInfo",
        "PartyVInfo",
        "SuppPubInfo",
        "SuppPrivInfo",
    ] {
        let bits = bit_string(params.attribute(name).unwrap_or_default())
            .ok_or("a ConcatKDFParams value is not a byte-aligned hex bit string")?;
        other_info.extend_from_slice(&bits);
    }
    let point = child(agreement, XENC, "OriginatorKeyInfo")
        .and_then(|n| child(n, DS, "KeyValue"))
        .and_then(|n| child(n, DSIG11, "ECKeyValue"))
        .and_then(|n| child(n, DSIG11, "PublicKey"))
        .and_then(|n| base64(n.text().unwrap_or_default()))
        .ok_or("no originator dsig11:PublicKey")?;
    let wrapped = child(encrypted_key, XENC, "CipherData")
        .and_then(|n| child(n, XENC, "CipherValue"))
        .and_then(|n| base64(n.text().unwrap_or_default()))
        .ok_or("no wrapped key")?;

    let z = shared_secret(&key.0, &point).ok_or("the originator key does not agree with ours")?;
    let kek = concat_kdf_sha256(&z, &other_info, kek_len).ok_or("ConcatKDF failed")?;
    let aes = openssl::aes::AesKey::new_decrypt(&kek).map_err(|_| "bad key-encryption key")?;
    if wrapped.len() < 24 || wrapped.len() % 8 != 0 {
        return Err("the wrapped key has no AES key-wrap length");
    }
    let mut cek = vec![0u8; wrapped.len() - 8];
    openssl::aes::unwrap_key(&aes, None, &mut cek, &wrapped)
        .map_err(|_| "the key does not unwrap with ours")?;
    Ok(cek)
}

/// ECDH of our key with the originator's uncompressed point on our key's curve.
fn shared_secret(ours: &PKey<Private>, point: &[u8]) -> Option<Vec<u8>> {
    let ec = ours.ec_key().ok()?;
    let group = ec.group();
    let mut ctx = BigNumContext::new().ok()?;
    let point = EcPoint::from_bytes(group, point, &mut ctx).ok()?;
    let peer = EcKey::from_public_key(group, &point).ok()?;
    peer.check_key().ok()?;
    let peer = PKey::from_ec_key(peer).ok()?;
    let mut deriver = Deriver::new(ours).ok()?;
    deriver.set_peer(&peer).ok()?;
    deriver.derive_to_vec().ok()
}

/// NIST SP 800-56A ConcatKDF with SHA-256 as XML Encryption 1.1 §5.4.1 uses it: `K(i) =
/// SHA-256(i as 4 bytes ‖ Z ‖ OtherInfo)`, OtherInfo the plain concatenation of the five
/// parameters; `len` bytes (at most one block here).
fn concat_kdf_sha256(z: &[u8], other_info: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut hasher = Hasher::new(MessageDigest::sha256()).ok()?;
    hasher.update(&1u32.to_be_bytes()).ok()?;
    hasher.update(z).ok()?;
    hasher.update(other_info).ok()?;
    let block = hasher.finish().ok()?;
    block.get(..len).map(<[u8]>::to_vec)
}

/// An `xs:hexBinary` bit string of ConcatKDFParams (XML Encryption 1.1 §5.4.1): its first
/// octet counts the padding bits, which must be 0; empty is the empty string.
fn bit_string(value: &str) -> Option<Vec<u8>> {
    let hex: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if hex.is_empty() {
        return Some(Vec::new());
    }
    let bytes = hex::decode(hex).ok()?;
    match bytes.split_first() {
        Some((0, rest)) => Some(rest.to_vec()),
        _ => None,
    }
}

fn base64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return None;
    }
    openssl::base64::decode_block(&compact).ok()
}

fn is(node: &roxmltree::Node<'_, '_>, namespace: &str, name: &str) -> bool {
    node.is_element()
        && node.tag_name().namespace() == Some(namespace)
        && node.tag_name().name() == name
}

fn child<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    namespace: &str,
    name: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|n| is(n, namespace, name))
}

/// The deepest element nesting of `xml`, by one linear pass that skips comments, CDATA,
/// processing instructions and quoted attribute values; `None` for a markup declaration
/// (DOCTYPE) or markup that never closes. It may over-count only on markup roxmltree refuses.
fn nesting_depth(xml: &[u8]) -> Option<usize> {
    let find = |from: usize, needle: &[u8]| -> Option<usize> {
        memchr::memmem::find(&xml[from..], needle).map(|i| from + i + needle.len())
    };
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while let Some(at) = memchr::memchr(b'<', &xml[i..]).map(|p| i + p) {
        let rest = &xml[at..];
        i = if rest.starts_with(b"<!--") {
            find(at + 4, b"-->")?
        } else if rest.starts_with(b"<![CDATA[") {
            find(at + 9, b"]]>")?
        } else if rest.starts_with(b"<?") {
            find(at + 2, b"?>")?
        } else if rest.starts_with(b"<!") {
            return None;
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            find(at + 2, b">")?
        } else {
            // A start tag: to its '>' outside quoted attribute values.
            let mut j = at + 1;
            let mut quote = None;
            loop {
                let c = *xml.get(j)?;
                match (quote, c) {
                    (None, b'"' | b'\'') => quote = Some(c),
                    (Some(q), c) if c == q => quote = None,
                    (None, b'>') => break,
                    _ => {}
                }
                j += 1;
            }
            if xml[j - 1] != b'/' {
                depth += 1;
                deepest = deepest.max(depth);
            }
            j + 1
        };
    }
    Some(deepest)
}

/// The parts of a `multipart/related` body (HTTP `content_type`) as asx-rs splits them (RFC
/// 2046: an optional preamble, `--boundary` lines, CRLF before each delimiter), each with its
/// Content-ID; the first is the SOAP envelope. `None` when it does not split, or has more
/// parts than asx-rs takes.
fn mime_parts<'a>(body: &'a [u8], content_type: &str) -> Option<Vec<(Option<String>, &'a [u8])>> {
    let parsed = mailparse::parse_content_type(content_type);
    let boundary = parsed.params.get("boundary")?;
    let open = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    let mut at = if body.starts_with(open.as_bytes()) {
        open.len()
    } else {
        memchr::memmem::find(body, delimiter.as_bytes())? + delimiter.len()
    };
    let mut parts = Vec::new();
    loop {
        // After a delimiter: "--" closes, CRLF opens a part.
        let rest = body.get(at..)?;
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        let start = at + rest.strip_prefix(b"\r\n").map(|_| 2)?;
        // Headers end at an empty line (asx-rs also takes a bare LF one).
        let (headers_end, separator) = match memchr::memmem::find(&body[start..], b"\r\n\r\n") {
            Some(i) => (start + i, 4),
            None => (start + memchr::memmem::find(&body[start..], b"\n\n")?, 2),
        };
        let content_start = headers_end + separator;
        let end =
            content_start + memchr::memmem::find(&body[content_start..], delimiter.as_bytes())?;
        if parts.len() == MAX_PARTS {
            return None;
        }
        parts.push((
            content_id(&body[start..headers_end]),
            &body[content_start..end],
        ));
        at = end + delimiter.len();
    }
}

/// The Content-ID of a part's header block, without angle brackets.
fn content_id(headers: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(headers).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-id").then(|| {
            value
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_depth_skips_comments_cdata_and_quoted_brackets_and_refuses_a_doctype() {
        assert_eq!(
            nesting_depth(b"<a><b x='>' y=\"<\"/><c><!-- <d> --><![CDATA[<e>]]></c></a>"),
            Some(2)
        );
        assert_eq!(nesting_depth(b"<?xml version='1.0'?><a/>"), Some(0));
        assert_eq!(nesting_depth(b"<!DOCTYPE a [<!ENTITY x 'y'>]><a/>"), None);
        assert_eq!(nesting_depth(b"<a><b"), None);
        let deep = "<a>".repeat(5000);
        assert_eq!(nesting_depth(deep.as_bytes()), Some(5000));
    }

    #[test]
    fn a_gzip_stream_is_inflated_only_up_to_the_limit() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..64 {
            encoder.write_all(&[0u8; 1024 * 1024]).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 128 * 1024, "{}", bomb.len());
        assert!(inflates_beyond(&bomb, 1024 * 1024));
        assert!(!inflates_beyond(&bomb, 64 * 1024 * 1024));
        assert!(!inflates_beyond(b"\x1f\x8bnot gzip", 0));
    }

    #[test]
    fn concat_kdf_params_are_hex_bit_strings_with_a_padding_octet() {
        assert_eq!(bit_string(""), Some(vec![]));
        assert_eq!(bit_string("00"), Some(vec![]));
        assert_eq!(bit_string("00 0a0B"), Some(vec![0x0a, 0x0b]));
        assert_eq!(bit_string("03ff"), None);
        assert_eq!(bit_string("zz"), None);
    }

    #[test]
    fn mime_parts_split_like_asx_rs_with_preamble_and_content_ids() {
        let body = b"\r\n--b1\r\nContent-Type: application/soap+xml\r\n\r\n<soap/>\r\n--b1\r\n\
                     Content-ID: <part0@x>\r\n\r\n\x00\r\nbin\r\n--b1--\r\n";
        let parts = mime_parts(
            body,
            "multipart/related; type=\"application/soap+xml\"; boundary=\"b1\"",
        )
        .unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], (None, &b"<soap/>"[..]));
        assert_eq!(parts[1], (Some("part0@x".to_string()), &b"\x00\r\nbin"[..]));
        assert!(mime_parts(body, "multipart/related; boundary=other").is_none());
        assert!(mime_parts(
            b"--b1\r\nX: y\r\n\r\nunterminated",
            "multipart/related; boundary=b1"
        )
        .is_none());
    }

    #[test]
    fn only_a_body_that_could_hold_a_part_inflating_past_the_limit_is_read() {
        let limit = 128 << 20;
        let largest_skipped = (limit / MAX_DEFLATE_RATIO) as usize;
        assert!(cannot_exceed(0, limit));
        assert!(cannot_exceed(largest_skipped, limit));
        assert!(!cannot_exceed(largest_skipped + 1, limit));
        assert!(!cannot_exceed(usize::MAX, limit), "no overflow");
        // A part is a slice of the body: even one as large as the whole skipped body is one
        // `check` would not open.
        let part = largest_skipped;
        assert!((part.saturating_sub(GCM_IV + GCM_TAG) as u64) * MAX_DEFLATE_RATIO <= limit);
    }

    #[test]
    fn small_parts_are_not_opened_and_an_unreadable_request_is_left_to_asx_rs() {
        let key = DecryptionKey(
            PKey::from_ec_key(
                EcKey::generate(
                    &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::BRAINPOOL_P256R1)
                        .unwrap(),
                )
                .unwrap(),
            )
            .unwrap(),
        );
        let ct = "multipart/related; boundary=b";
        let small = b"--b\r\nContent-Type: application/soap+xml\r\n\r\n<a/>\r\n--b\r\n\
                      Content-ID: <p>\r\n\r\n0123456789012345678901234567890123456789\r\n--b--\r\n";
        assert_eq!(check(small, ct, &key, 64 * 1024), Verdict::Within);
        let big = [
            &b"--b\r\nContent-Type: application/soap+xml\r\n\r\n<a/>\r\n--b\r\nContent-ID: <p>\r\n\r\n"[..],
            &vec![7u8; 4096][..],
            &b"\r\n--b--\r\n"[..],
        ]
        .concat();
        assert_eq!(
            check(&big, ct, &key, 64 * 1024),
            Verdict::Unread("not exactly one xenc:EncryptedKey")
        );
        // Plain SOAP has no attachments to inflate.
        assert_eq!(
            check(&big, "application/soap+xml", &key, 64 * 1024),
            Verdict::Within
        );
        assert_eq!(
            check(b"--x\r\nno end", ct, &key, 64 * 1024),
            Verdict::Unread("the multipart/related body does not split into parts")
        );
    }
}
