//! The inbound mail reading path on arbitrary bytes, as `transport::email::handle_mail` runs it
//! on every fetched mail before anything is journaled as an interchange: decrypt with our key
//! (brainpool ECDH and RSA-OAEP identities; AuthEnvelopedData, EnvelopedData with GCM or CBC),
//! verify the signature against the pinned partner certificates, take the one attachment out
//! and read its UNB sender. Also the attachment reader on the raw mail. No panic; every refusal
//! is an error value that prints.
//!
//! The key material is fixed (`fuzz/keys/`, test keys) so that the seed mails
//! `scripts/fuzz-long.sh` makes with the openssl CLI decrypt in every run.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mako_gateway::acks::read_envelope;
use mako_gateway::transport::email::extract_single_attachment;
use mako_gateway::transport::email::smime::{decrypt_then_verify, Certificate, Identity};

struct Keys {
    own: Vec<Identity>,
    trusted: Vec<Certificate>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let ec = (
            include_bytes!("../keys/mail-ec.key").as_slice(),
            include_bytes!("../keys/mail-ec.pem").as_slice(),
        );
        let rsa = (
            include_bytes!("../keys/mail-rsa.key").as_slice(),
            include_bytes!("../keys/mail-rsa.pem").as_slice(),
        );
        Keys {
            own: [ec, rsa]
                .iter()
                .map(|(key, cert)| Identity::from_pem(key, cert).expect("fuzz identity"))
                .collect(),
            trusted: [ec.1, rsa.1]
                .iter()
                .map(|cert| Certificate::from_pem(cert).expect("fuzz certificate"))
                .collect(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    for own in &keys.own {
        match decrypt_then_verify(data, own, &keys.trusted) {
            Ok(verified) => {
                assert!(keys.trusted.contains(&verified.signer));
                match extract_single_attachment(&verified.content) {
                    Ok(attachment) => {
                        let _ = read_envelope(&attachment.bytes);
                        let _ = attachment.file_name;
                    }
                    Err(e) => assert!(!e.to_string().is_empty()),
                }
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    match extract_single_attachment(data) {
        Ok(attachment) => {
            let _ = read_envelope(&attachment.bytes);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
