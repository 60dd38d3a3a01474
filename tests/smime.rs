//! S/MIME against an independent peer, the `openssl` CLI: every mail we write is decrypted and
//! verified by `openssl cms`, every mail `openssl cms` writes is read by us, and bad mails give
//! their precise error. The keys and certificates are made at test time (tests/common/pki.rs).

#[path = "common/pki.rs"]
mod pki;

use std::sync::OnceLock;

use mako_gateway::transport::email::smime::{
    decrypt_then_verify, sign_then_encrypt, sm_pki_partner_id, Certificate, Identity, KeyFamily,
    SmimeError, Verified,
};
use pki::{KeyKind, Party, Pki};

/// The gateway's and its partners' keys and certificates, made once per test run.
struct Fixture {
    pki: Pki,
    we_ec: Party,
    partner_ec: Party,
    stranger_ec: Party,
    we_rsa: Party,
    partner_rsa: Party,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let pki = Pki::new();
        Fixture {
            we_ec: pki.issue(
                "we_ec",
                KeyKind::Brainpool,
                "/C=DE/O=Lieferant GmbH/OU=9900000000003/CN=Lieferant EMT.MAK",
            ),
            partner_ec: pki.issue(
                "partner_ec",
                KeyKind::Brainpool,
                "/C=DE/O=Netz GmbH/OU=9900000000011/CN=Netz EMT.MAK",
            ),
            stranger_ec: pki.issue(
                "stranger_ec",
                KeyKind::Brainpool,
                "/C=DE/O=Fremd GmbH/OU=9900000000029/CN=Fremd EMT.MAK",
            ),
            we_rsa: pki.issue(
                "we_rsa",
                KeyKind::Rsa(3072),
                "/C=DE/O=Lieferant GmbH/CN=edifact@lieferant.example",
            ),
            partner_rsa: pki.issue(
                "partner_rsa",
                KeyKind::Rsa(2048),
                "/C=DE/O=Messstellenbetrieb AG/CN=edifact@msb.example",
            ),
            pki,
        }
    })
}

fn identity(party: &Party) -> Identity {
    Identity::from_pem_files(&party.key, &party.cert).expect("identity")
}

fn cert(party: &Party) -> Certificate {
    Certificate::from_pem_file(&party.cert).expect("certificate")
}

fn name(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The MIME entity a mail carries: one EDIFACT interchange as `application/octet-stream`.
fn content(tag: &str) -> Vec<u8> {
    format!(
        "Content-Type: multipart/mixed; boundary=\"mako-{tag}\"\r\n\r\n\
         --mako-{tag}\r\n\
         Content-Type: application/octet-stream; name=\"ORDERS_{tag}.txt\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"ORDERS_{tag}.txt\"\r\n\r\n\
         VU5BOisuPyAnVU5CK1VOT0M6Mys5OTAwMDAwMDAwMDAzOjUwMCs5OTAwMDAwMDAwMDExOjUwMCc=\r\n\
         --mako-{tag}--\r\n"
    )
    .into_bytes()
}

/// Writes `bytes` to a file named `file` in the PKI directory and returns the name.
fn put(file: &str, bytes: &[u8]) -> String {
    std::fs::write(fixture().pki.path(file), bytes).expect("write");
    file.to_string()
}

fn get(file: &str) -> Vec<u8> {
    std::fs::read(fixture().pki.path(file)).expect("read")
}

fn cms_print(file: &str) -> String {
    let out = fixture()
        .pki
        .openssl(&["cms", "-cmsout", "-print", "-in", file]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_contains(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// (1) What we write, `openssl cms` decrypts and verifies.
// ---------------------------------------------------------------------------------------------

/// Signs with `signer`, encrypts to `recipient`, has `openssl cms` decrypt and verify it, and
/// returns the `-cmsout -print` of the envelope and of the signed data.
fn ours_read_by_openssl(tag: &str, signer: &Party, recipient: &Party) -> (String, String) {
    let f = fixture();
    let body = content(tag);
    let mail = sign_then_encrypt(&body, &identity(signer), &cert(recipient)).expect("sign+encrypt");
    let head = String::from_utf8_lossy(&mail[..200]).into_owned();
    assert!(
        head.starts_with("Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data"),
        "{head}"
    );
    let mail_file = put(&format!("{tag}.mail.eml"), &mail);
    let inner_file = format!("{tag}.inner.eml");
    let out_file = format!("{tag}.content");
    f.pki.openssl(&[
        "cms",
        "-decrypt",
        "-in",
        &mail_file,
        "-recip",
        name(&recipient.cert),
        "-inkey",
        name(&recipient.key),
        "-out",
        &inner_file,
    ]);
    f.pki.openssl(&[
        "cms",
        "-verify",
        "-in",
        &inner_file,
        "-CAfile",
        name(&f.pki.ca()),
        "-out",
        &out_file,
    ]);
    assert_eq!(get(&out_file), body, "openssl's verified content");
    (cms_print(&mail_file), cms_print(&inner_file))
}

#[test]
fn openssl_reads_what_we_write_with_brainpool_keys() {
    let f = fixture();
    let (envelope, signed) = ours_read_by_openssl("ours_ec", &f.we_ec, &f.partner_ec);
    assert_contains(
        &envelope,
        &[
            "contentType: id-smime-ct-authEnvelopedData",
            "dhSinglePass-stdDH-sha256kdf-scheme",
            "id-aes128-wrap",
            "algorithm: aes-128-gcm",
        ],
    );
    assert_contains(
        &signed,
        &[
            "contentType: pkcs7-signedData",
            "algorithm: sha256",
            "algorithm: ecdsa-with-SHA256",
        ],
    );
}

#[test]
fn openssl_reads_what_we_write_with_rsa_keys() {
    let f = fixture();
    let (envelope, signed) = ours_read_by_openssl("ours_rsa", &f.we_rsa, &f.partner_rsa);
    assert_contains(
        &envelope,
        &[
            "contentType: id-smime-ct-authEnvelopedData",
            "algorithm: rsaesOaep",
            "OBJECT            :sha256",
            "OBJECT            :mgf1",
            "algorithm: aes-128-gcm",
        ],
    );
    assert_contains(
        &signed,
        &[
            "contentType: pkcs7-signedData",
            "algorithm: rsassaPss",
            "OBJECT            :sha256",
            "OBJECT            :mgf1",
            // The salt is as long as the SHA-256 digest.
            "INTEGER           :20",
        ],
    );
}

#[test]
fn openssl_reads_what_we_write_across_families() {
    let f = fixture();
    let (envelope, signed) = ours_read_by_openssl("ours_ec_to_rsa", &f.we_ec, &f.partner_rsa);
    assert_contains(
        &envelope,
        &["algorithm: rsaesOaep", "algorithm: aes-128-gcm"],
    );
    assert_contains(&signed, &["algorithm: ecdsa-with-SHA256"]);
    let (envelope, signed) = ours_read_by_openssl("ours_rsa_to_ec", &f.we_rsa, &f.partner_ec);
    assert_contains(&envelope, &["dhSinglePass-stdDH-sha256kdf-scheme"]);
    assert_contains(&signed, &["algorithm: rsassaPss"]);
}

#[test]
fn our_own_mail_round_trips() {
    let f = fixture();
    let body = content("round_trip");
    let mail = sign_then_encrypt(&body, &identity(&f.we_ec), &cert(&f.partner_ec)).unwrap();
    let Verified { content, signer } =
        decrypt_then_verify(&mail, &identity(&f.partner_ec), &[cert(&f.we_ec)]).unwrap();
    assert_eq!(content, body);
    assert_eq!(signer, cert(&f.we_ec));
}

// ---------------------------------------------------------------------------------------------
// (2) What `openssl cms` writes, we read.
// ---------------------------------------------------------------------------------------------

/// How `openssl cms` builds the partner's mail.
struct PeerMail<'a> {
    tag: &'a str,
    signer: &'a Party,
    sign_opts: &'a [&'a str],
    /// `-nodetach`: opaque signed-data instead of multipart/signed.
    opaque: bool,
    cipher: &'a str,
    recipient: &'a Party,
    encrypt_opts: &'a [&'a str],
}

/// `openssl cms -sign … | openssl cms -encrypt …`; returns the content and the mail file.
fn peer_mail(m: &PeerMail) -> (Vec<u8>, String) {
    let f = fixture();
    let body = content(m.tag);
    let content_file = put(&format!("{}.peer.content", m.tag), &body);
    let signed_file = format!("{}.peer.signed.eml", m.tag);
    let mail_file = format!("{}.peer.mail.eml", m.tag);
    let mut sign = vec![
        "cms",
        "-sign",
        "-in",
        &content_file,
        "-md",
        "sha256",
        "-signer",
        name(&m.signer.cert),
        "-inkey",
        name(&m.signer.key),
    ];
    sign.extend_from_slice(m.sign_opts);
    if m.opaque {
        sign.push("-nodetach");
    }
    sign.extend_from_slice(&["-out", &signed_file]);
    f.pki.openssl(&sign);
    let mut encrypt = vec![
        "cms",
        "-encrypt",
        "-in",
        &signed_file,
        m.cipher,
        "-recip",
        name(&m.recipient.cert),
    ];
    encrypt.extend_from_slice(m.encrypt_opts);
    encrypt.extend_from_slice(&["-out", &mail_file]);
    f.pki.openssl(&encrypt);
    (body, mail_file)
}

fn read_peer_mail(m: &PeerMail, own: &Party, trusted: &Party) -> String {
    let (body, mail_file) = peer_mail(m);
    let verified = decrypt_then_verify(&get(&mail_file), &identity(own), &[cert(trusted)])
        .unwrap_or_else(|e| panic!("{}: {e}", m.tag));
    // Without -binary, openssl signs the CRLF form of the content; ours already is.
    assert_eq!(verified.content, body, "{}", m.tag);
    assert_eq!(verified.signer, cert(trusted));
    cms_print(&mail_file)
}

#[test]
fn we_read_openssl_mail_with_brainpool_keys_multipart_signed() {
    let f = fixture();
    let envelope = read_peer_mail(
        &PeerMail {
            tag: "peer_ec",
            signer: &f.partner_ec,
            sign_opts: &[],
            opaque: false,
            cipher: "-aes-128-gcm",
            recipient: &f.we_ec,
            encrypt_opts: &["-keyopt", "ecdh_kdf_md:sha256"],
        },
        &f.we_ec,
        &f.partner_ec,
    );
    assert_contains(
        &envelope,
        &[
            "id-smime-ct-authEnvelopedData",
            "dhSinglePass-stdDH-sha256kdf-scheme",
        ],
    );
}

#[test]
fn we_read_openssl_mail_with_brainpool_keys_opaque_signed() {
    let f = fixture();
    read_peer_mail(
        &PeerMail {
            tag: "peer_ec_opaque",
            signer: &f.partner_ec,
            sign_opts: &[],
            opaque: true,
            cipher: "-aes-128-gcm",
            recipient: &f.we_ec,
            encrypt_opts: &["-keyopt", "ecdh_kdf_md:sha256"],
        },
        &f.we_ec,
        &f.partner_ec,
    );
}

#[test]
fn we_read_openssl_mail_with_rsa_pss_and_oaep() {
    let f = fixture();
    let envelope = read_peer_mail(
        &PeerMail {
            tag: "peer_rsa",
            signer: &f.partner_rsa,
            sign_opts: &["-keyopt", "rsa_padding_mode:pss"],
            opaque: false,
            cipher: "-aes-128-gcm",
            recipient: &f.we_rsa,
            encrypt_opts: &[
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha256",
            ],
        },
        &f.we_rsa,
        &f.partner_rsa,
    );
    assert_contains(&envelope, &["id-smime-ct-authEnvelopedData", "rsaesOaep"]);
}

#[test]
fn we_read_legacy_aes_cbc_enveloped_data() {
    let f = fixture();
    let envelope = read_peer_mail(
        &PeerMail {
            tag: "peer_rsa_cbc",
            signer: &f.partner_rsa,
            sign_opts: &["-keyopt", "rsa_padding_mode:pss"],
            opaque: true,
            cipher: "-aes-256-cbc",
            recipient: &f.we_rsa,
            encrypt_opts: &["-keyopt", "rsa_padding_mode:oaep"],
        },
        &f.we_rsa,
        &f.partner_rsa,
    );
    assert_contains(&envelope, &["pkcs7-envelopedData", "aes-256-cbc"]);
}

#[test]
fn we_read_enveloped_data_with_aes_gcm() {
    // `openssl cms` writes GCM only as AuthEnvelopedData; the EnvelopedData form (tag appended
    // to the ciphertext) is made here from openssl's mail by moving the tag (tests/common has
    // no second implementation of that form).
    let f = fixture();
    let m = PeerMail {
        tag: "peer_ec_env_gcm",
        signer: &f.partner_ec,
        sign_opts: &[],
        opaque: false,
        cipher: "-aes-128-gcm",
        recipient: &f.we_ec,
        encrypt_opts: &["-keyopt", "ecdh_kdf_md:sha256"],
    };
    let (body, mail_file) = peer_mail(&m);
    let der_file = format!("{}.der", m.tag);
    f.pki.openssl(&[
        "cms", "-cmsout", "-in", &mail_file, "-outform", "DER", "-out", &der_file,
    ]);
    let enveloped = gcm_auth_enveloped_as_enveloped(&get(&der_file));
    let mail = smime_entity("enveloped-data", &enveloped);
    let env_file = put(&format!("{}.env.eml", m.tag), &mail);
    assert_contains(
        &cms_print(&env_file),
        &["pkcs7-envelopedData", "aes-128-gcm"],
    );
    let verified = decrypt_then_verify(&mail, &identity(&f.we_ec), &[cert(&f.partner_ec)]).unwrap();
    assert_eq!(verified.content, body);
}

/// Re-encodes an AuthEnvelopedData (DER) as EnvelopedData whose encrypted content is the
/// ciphertext followed by the GCM tag.
fn gcm_auth_enveloped_as_enveloped(der: &[u8]) -> Vec<u8> {
    use der::asn1::{ObjectIdentifier, OctetString};
    use der::{Any, Decode, Encode};
    let info = cms::content_info::ContentInfo::from_der(der).unwrap();
    // AuthEnvelopedData ::= SEQUENCE { version, [0] originatorInfo OPTIONAL, recipientInfos,
    //   authEncryptedContentInfo, [1] authAttrs OPTIONAL, mac, [2] unauthAttrs OPTIONAL }
    let fields: Vec<Any> = info.content.decode_as::<Vec<Any>>().unwrap();
    assert_eq!(
        fields.len(),
        4,
        "openssl writes version, recipients, content, mac"
    );
    let mut eci = fields[2]
        .decode_as::<cms::enveloped_data::EncryptedContentInfo>()
        .unwrap();
    let mac = fields[3].decode_as::<OctetString>().unwrap();
    let mut sealed = eci.encrypted_content.take().unwrap().into_bytes();
    sealed.extend_from_slice(mac.as_bytes());
    eci.encrypted_content = Some(OctetString::new(sealed).unwrap());
    let env = cms::enveloped_data::EnvelopedData {
        version: cms::content_info::CmsVersion::V2,
        originator_info: None,
        recip_infos: fields[1]
            .decode_as::<cms::enveloped_data::RecipientInfos>()
            .unwrap(),
        encrypted_content: eci,
        unprotected_attrs: None,
    };
    cms::content_info::ContentInfo {
        content_type: ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3"),
        content: Any::encode_from(&env).unwrap(),
    }
    .to_der()
    .unwrap()
}

fn smime_entity(smime_type: &str, der: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "Content-Type: application/pkcs7-mime; smime-type={smime_type}; name=\"smime.p7m\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    let b64 = openssl::base64::encode_block(der);
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// (3) Bad input: each its own error, no panic.
// ---------------------------------------------------------------------------------------------

#[test]
fn encrypted_but_unsigned_mail_is_unsigned() {
    let f = fixture();
    let content_file = put("unsigned.content", &content("unsigned"));
    f.pki.openssl(&[
        "cms",
        "-encrypt",
        "-in",
        &content_file,
        "-aes-128-gcm",
        "-recip",
        name(&f.we_ec.cert),
        "-keyopt",
        "ecdh_kdf_md:sha256",
        "-out",
        "unsigned.eml",
    ]);
    let err = decrypt_then_verify(
        &get("unsigned.eml"),
        &identity(&f.we_ec),
        &[cert(&f.partner_ec)],
    )
    .unwrap_err();
    assert!(
        matches!(&err, SmimeError::Unsigned { found } if found == "multipart/mixed"),
        "{err:?}"
    );
}

#[test]
fn mail_signed_by_someone_else_is_not_trusted() {
    let f = fixture();
    let mail = sign_then_encrypt(
        &content("stranger"),
        &identity(&f.stranger_ec),
        &cert(&f.we_ec),
    )
    .unwrap();
    let err = decrypt_then_verify(&mail, &identity(&f.we_ec), &[cert(&f.partner_ec)]).unwrap_err();
    match &err {
        SmimeError::SignerNotTrusted {
            signer,
            certificate,
        } => {
            assert!(signer.starts_with("9900000000029 ("), "{signer}");
            assert_eq!(certificate.as_ref(), Some(&cert(&f.stranger_ec)));
        }
        other => panic!("{other:?}"),
    }
    let err = decrypt_then_verify(&mail, &identity(&f.we_ec), &[]).unwrap_err();
    assert!(
        matches!(err, SmimeError::SignerNotTrusted { .. }),
        "{err:?}"
    );
}

#[test]
fn changed_signed_content_is_a_bad_signature() {
    let f = fixture();
    let content_file = put("badsig.content", &content("badsig"));
    f.pki.openssl(&[
        "cms",
        "-sign",
        "-in",
        &content_file,
        "-signer",
        name(&f.partner_ec.cert),
        "-inkey",
        name(&f.partner_ec.key),
        "-out",
        "badsig.signed.eml",
    ]);
    let signed = String::from_utf8(get("badsig.signed.eml")).unwrap();
    assert!(signed.contains("ORDERS_badsig.txt"));
    let forged = signed.replacen("VU5BOisuPyAn", "VU5BOisuPyAo", 1);
    assert_ne!(forged, signed);
    put("badsig.forged.eml", forged.as_bytes());
    f.pki.openssl(&[
        "cms",
        "-encrypt",
        "-in",
        "badsig.forged.eml",
        "-aes-128-gcm",
        "-recip",
        name(&f.we_ec.cert),
        "-keyopt",
        "ecdh_kdf_md:sha256",
        "-out",
        "badsig.eml",
    ]);
    let err = decrypt_then_verify(
        &get("badsig.eml"),
        &identity(&f.we_ec),
        &[cert(&f.partner_ec)],
    )
    .unwrap_err();
    match &err {
        SmimeError::BadSignature { signer, .. } => assert!(signer.contains("Netz EMT.MAK")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tampered_ciphertext_cannot_be_decrypted() {
    let f = fixture();
    let mail = sign_then_encrypt(
        &content("tamper"),
        &identity(&f.partner_ec),
        &cert(&f.we_ec),
    )
    .unwrap();
    let mail_file = put("tamper.eml", &mail);
    f.pki.openssl(&[
        "cms",
        "-cmsout",
        "-in",
        &mail_file,
        "-outform",
        "DER",
        "-out",
        "tamper.der",
    ]);
    let mut der = get("tamper.der");
    // AuthEnvelopedData ends with `mac OCTET STRING (16 bytes)`; the byte before is the last
    // byte of the ciphertext.
    let n = der.len();
    assert_eq!(&der[n - 18..n - 16], &[0x04, 0x10]);
    der[n - 19] ^= 0x01;
    let tampered = smime_entity("authEnveloped-data", &der);
    let err =
        decrypt_then_verify(&tampered, &identity(&f.we_ec), &[cert(&f.partner_ec)]).unwrap_err();
    assert!(matches!(err, SmimeError::CannotDecrypt { .. }), "{err:?}");
    // The same for a changed tag.
    der[n - 19] ^= 0x01;
    der[n - 1] ^= 0x80;
    let tampered = smime_entity("authEnveloped-data", &der);
    let err =
        decrypt_then_verify(&tampered, &identity(&f.we_ec), &[cert(&f.partner_ec)]).unwrap_err();
    assert!(matches!(err, SmimeError::CannotDecrypt { .. }), "{err:?}");
}

#[test]
fn mail_encrypted_to_someone_else_is_not_for_us() {
    let f = fixture();
    let to_stranger = sign_then_encrypt(
        &content("elsewhere"),
        &identity(&f.partner_ec),
        &cert(&f.stranger_ec),
    )
    .unwrap();
    let err =
        decrypt_then_verify(&to_stranger, &identity(&f.we_ec), &[cert(&f.partner_ec)]).unwrap_err();
    assert!(
        matches!(&err, SmimeError::NotForUs { ours } if ours.contains("Lieferant EMT.MAK")),
        "{err:?}"
    );
    // An RSA recipient while our key is EC: no recipient info of our kind at all.
    let to_rsa = sign_then_encrypt(
        &content("elsewhere_rsa"),
        &identity(&f.partner_ec),
        &cert(&f.partner_rsa),
    )
    .unwrap();
    let err =
        decrypt_then_verify(&to_rsa, &identity(&f.we_ec), &[cert(&f.partner_ec)]).unwrap_err();
    assert!(matches!(err, SmimeError::NotForUs { .. }), "{err:?}");
}

#[test]
fn plain_and_signed_only_mails_are_not_encrypted() {
    let f = fixture();
    let own = identity(&f.we_ec);
    let trusted = [cert(&f.partner_ec)];
    let plain = b"From: a@example\r\nSubject: hi\r\nContent-Type: text/plain\r\n\r\nhello\r\n";
    let err = decrypt_then_verify(plain, &own, &trusted).unwrap_err();
    assert!(
        matches!(&err, SmimeError::NotEncrypted { found } if found == "text/plain"),
        "{err:?}"
    );
    let content_file = put("signed_only.content", &content("signed_only"));
    for (opaque, expected) in [(false, "multipart/signed"), (true, "signed-data")] {
        let mut args = vec![
            "cms",
            "-sign",
            "-in",
            &content_file,
            "-signer",
            name(&f.partner_ec.cert),
            "-inkey",
            name(&f.partner_ec.key),
            "-out",
            "signed_only.eml",
        ];
        if opaque {
            args.push("-nodetach");
        }
        f.pki.openssl(&args);
        let err = decrypt_then_verify(&get("signed_only.eml"), &own, &trusted).unwrap_err();
        assert!(
            matches!(&err, SmimeError::NotEncrypted { found } if found == expected),
            "{err:?}"
        );
    }
}

#[test]
fn garbage_is_malformed() {
    let f = fixture();
    let own = identity(&f.we_ec);
    let trusted = [cert(&f.partner_ec)];
    let cases: [&[u8]; 5] = [
        b"",
        b"\x00\xff\x13garbage",
        b"not a header\r\n\r\nbody",
        b"Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\n\
          Content-Transfer-Encoding: base64\r\n\r\nbm90IERFUg==\r\n",
        b"Content-Type: application/pkcs7-mime\r\n\r\n%%%%\r\n",
    ];
    for case in cases {
        let err = decrypt_then_verify(case, &own, &trusted).unwrap_err();
        assert!(
            matches!(err, SmimeError::Malformed { .. }),
            "{case:?}: {err:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (4) Issue 15: reasons in words an operator acts on, naming the problem and the party, never
// OpenSSL's internals (error codes, source paths, an empty "OpenSSL error").
// ---------------------------------------------------------------------------------------------

/// The error's text, checked to carry none of OpenSSL's internals.
fn in_words(err: &SmimeError) -> String {
    let text = err.to_string();
    for internal in ["OpenSSL error", "error:", ".c:", "routines"] {
        assert!(!text.contains(internal), "`{internal}` in: {text}");
    }
    text
}

/// An interchange as it would be attached, without any MIME around it.
const BARE_INTERCHANGE: &[u8] = b"UNA:+.? 'UNB+UNOC:3+9900000000011:500+9900000000003:500+260512:0930+BARE1'UNH+1+ORDRSP:D:10A:UN:1.4b'BGM+Z91+X'UNT+2+1'UNZ+1+BARE1'";

#[test]
fn regression_an_encrypted_bare_interchange_is_unsigned_not_malformed() {
    let f = fixture();
    let content_file = put("bare.content", BARE_INTERCHANGE);
    f.pki.openssl(&[
        "cms",
        "-encrypt",
        "-binary",
        "-in",
        &content_file,
        "-aes-128-gcm",
        "-recip",
        name(&f.we_ec.cert),
        "-keyopt",
        "ecdh_kdf_md:sha256",
        "-out",
        "bare.eml",
    ]);
    let err = decrypt_then_verify(
        &get("bare.eml"),
        &identity(&f.we_ec),
        &[cert(&f.partner_ec)],
    )
    .unwrap_err();
    assert!(matches!(err, SmimeError::Unsigned { .. }), "{err:?}");
    let text = in_words(&err);
    assert_contains(&text, &["not signed", "bare interchange"]);
    // Bytes that are neither MIME nor an interchange stay malformed, and say where they are.
    let content_file = put(
        "garbage.content",
        b"\x00\x01\x02 no headers, no interchange",
    );
    f.pki.openssl(&[
        "cms",
        "-encrypt",
        "-binary",
        "-in",
        &content_file,
        "-aes-128-gcm",
        "-recip",
        name(&f.we_ec.cert),
        "-keyopt",
        "ecdh_kdf_md:sha256",
        "-out",
        "garbage.eml",
    ]);
    let err = decrypt_then_verify(
        &get("garbage.eml"),
        &identity(&f.we_ec),
        &[cert(&f.partner_ec)],
    )
    .unwrap_err();
    assert!(matches!(err, SmimeError::Malformed { .. }), "{err:?}");
    assert_contains(&in_words(&err), &["decrypted content"]);
}

#[test]
fn regression_a_changed_ciphertext_tag_or_wrapped_key_is_named_in_words() {
    let f = fixture();
    let mail = sign_then_encrypt(
        &content("tamper_words"),
        &identity(&f.partner_ec),
        &cert(&f.we_ec),
    )
    .unwrap();
    let mail_file = put("tamper_words.eml", &mail);
    f.pki.openssl(&[
        "cms",
        "-cmsout",
        "-in",
        &mail_file,
        "-outform",
        "DER",
        "-out",
        "tamper_words.der",
    ]);
    let der = get("tamper_words.der");
    let n = der.len();
    let decrypt = |der: &[u8]| {
        decrypt_then_verify(
            &smime_entity("authEnveloped-data", der),
            &identity(&f.we_ec),
            &[cert(&f.partner_ec)],
        )
        .unwrap_err()
    };
    // The last byte of the ciphertext, then the last byte of the tag.
    for at in [n - 19, n - 1] {
        let mut changed = der.clone();
        changed[at] ^= 0x01;
        let err = decrypt(&changed);
        assert!(matches!(err, SmimeError::CannotDecrypt { .. }), "{err:?}");
        assert_contains(
            &in_words(&err),
            &["changed after it was encrypted", "authentication tag"],
        );
    }
    // The wrapped content key (AES key wrap of 16 bytes: an OCTET STRING of 24).
    let wrapped = der
        .windows(2)
        .position(|w| w == [0x04, 0x18])
        .expect("the wrapped key");
    let mut changed = der.clone();
    changed[wrapped + 5] ^= 0x01;
    let err = decrypt(&changed);
    assert!(matches!(err, SmimeError::CannotDecrypt { .. }), "{err:?}");
    assert_contains(&in_words(&err), &["content key", "does not unwrap"]);
    // Legacy AES-CBC has no tag: a changed last block fails its padding check.
    let content_file = put("cbc_words.content", &content("cbc_words"));
    f.pki.openssl(&[
        "cms",
        "-sign",
        "-in",
        &content_file,
        "-signer",
        name(&f.partner_ec.cert),
        "-inkey",
        name(&f.partner_ec.key),
        "-out",
        "cbc_words.signed.eml",
    ]);
    f.pki.openssl(&[
        "cms",
        "-encrypt",
        "-in",
        "cbc_words.signed.eml",
        "-aes-128-cbc",
        "-recip",
        name(&f.we_ec.cert),
        "-keyopt",
        "ecdh_kdf_md:sha256",
        "-outform",
        "DER",
        "-out",
        "cbc_words.der",
    ]);
    let mut der = get("cbc_words.der");
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let err = decrypt_then_verify(
        &smime_entity("enveloped-data", &der),
        &identity(&f.we_ec),
        &[cert(&f.partner_ec)],
    )
    .unwrap_err();
    assert!(matches!(err, SmimeError::CannotDecrypt { .. }), "{err:?}");
    assert_contains(
        &in_words(&err),
        &["changed after it was encrypted", "AES-CBC padding"],
    );
}

#[test]
fn regression_a_bad_signature_names_the_signer_and_the_problem_in_words() {
    let f = fixture();
    let content_file = put("badsig_words.content", &content("badsig_words"));
    f.pki.openssl(&[
        "cms",
        "-sign",
        "-in",
        &content_file,
        "-signer",
        name(&f.partner_ec.cert),
        "-inkey",
        name(&f.partner_ec.key),
        "-out",
        "badsig_words.signed.eml",
    ]);
    let signed = String::from_utf8(get("badsig_words.signed.eml")).unwrap();
    let forged = signed.replacen("VU5BOisuPyAn", "VU5BOisuPyAo", 1);
    assert_ne!(forged, signed);
    put("badsig_words.forged.eml", forged.as_bytes());
    f.pki.openssl(&[
        "cms",
        "-encrypt",
        "-in",
        "badsig_words.forged.eml",
        "-aes-128-gcm",
        "-recip",
        name(&f.we_ec.cert),
        "-keyopt",
        "ecdh_kdf_md:sha256",
        "-out",
        "badsig_words.eml",
    ]);
    let err = decrypt_then_verify(
        &get("badsig_words.eml"),
        &identity(&f.we_ec),
        &[cert(&f.partner_ec)],
    )
    .unwrap_err();
    assert!(matches!(err, SmimeError::BadSignature { .. }), "{err:?}");
    assert_contains(
        &in_words(&err),
        &[
            "content changed after signing (signature does not match)",
            "9900000000011 (CN=Netz EMT.MAK, OU=9900000000011)",
        ],
    );
}

#[test]
fn regression_an_untrusted_signer_is_named_by_the_certificate_in_the_mail() {
    let f = fixture();
    let mail = sign_then_encrypt(
        &content("stranger_words"),
        &identity(&f.stranger_ec),
        &cert(&f.we_ec),
    )
    .unwrap();
    let err = decrypt_then_verify(&mail, &identity(&f.we_ec), &[cert(&f.partner_ec)]).unwrap_err();
    assert!(
        matches!(err, SmimeError::SignerNotTrusted { .. }),
        "{err:?}"
    );
    assert_contains(
        &in_words(&err),
        &["signed by 9900000000029 (CN=Fremd EMT.MAK, OU=9900000000029)"],
    );
}

// ---------------------------------------------------------------------------------------------
// Keys and certificates.
// ---------------------------------------------------------------------------------------------

#[test]
fn key_of_another_certificate_is_refused() {
    let f = fixture();
    let err = Identity::from_pem_files(&f.we_ec.key, &f.partner_ec.cert).unwrap_err();
    assert!(
        matches!(&err, SmimeError::KeyMismatch { subject } if subject.contains("Netz EMT.MAK")),
        "{err:?}"
    );
    let err = Certificate::from_pem(b"-----BEGIN CERTIFICATE-----\nxx\n").unwrap_err();
    assert!(
        matches!(
            err,
            SmimeError::Pem {
                what: "certificate",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn key_family_follows_the_key() {
    let f = fixture();
    assert_eq!(KeyFamily::of(&cert(&f.partner_ec)).unwrap(), KeyFamily::Ecc);
    assert_eq!(
        KeyFamily::of(&cert(&f.partner_rsa)).unwrap(),
        KeyFamily::Rsa
    );
}

#[test]
fn sm_pki_partner_id_is_the_subject_ou_of_an_emt_mak_certificate() {
    let f = fixture();
    assert_eq!(
        sm_pki_partner_id(&cert(&f.partner_ec)).as_deref(),
        Some("9900000000011")
    );
    assert_eq!(
        sm_pki_partner_id(&cert(&f.we_ec)).as_deref(),
        Some("9900000000003")
    );
    // No EMT.MAK in the CN.
    assert_eq!(sm_pki_partner_id(&cert(&f.partner_rsa)), None);
    // EMT.MAK, but the OU is no market partner ID (wrong check digit).
    let odd = f.pki.issue(
        "odd_ou",
        KeyKind::Brainpool,
        "/C=DE/O=X/OU=9900000000012/CN=X EMT.MAK",
    );
    assert_eq!(sm_pki_partner_id(&cert(&odd)), None);
}

#[test]
fn ten_megabyte_content_round_trips() {
    let f = fixture();
    let mut body = b"Content-Type: application/octet-stream\r\n\r\n".to_vec();
    body.extend(std::iter::repeat_n(b'A', 10 * 1024 * 1024));
    let mail = sign_then_encrypt(&body, &identity(&f.we_rsa), &cert(&f.partner_ec)).unwrap();
    let verified =
        decrypt_then_verify(&mail, &identity(&f.partner_ec), &[cert(&f.we_rsa)]).unwrap();
    assert_eq!(verified.content.len(), body.len());
    assert!(verified.content == body);
}

/// `unsafe_code` is `deny` crate-wide so that exactly four modules can allow it, each with its
/// reason in its module docs: the CMS calls the safe crate does not wrap, the TLS session
/// offered for resumption, the input file an offline command maps, and the allocator's
/// `mi_collect` after a large interchange (issue 16).
#[test]
fn only_the_cms_ffi_tls_session_cli_input_and_alloc_modules_allow_unsafe_code() {
    fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs")
                && std::fs::read_to_string(&path)
                    .unwrap()
                    .contains(&["allow(", "unsafe_code)"].concat())
            {
                found.push(
                    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                        .unwrap()
                        .display()
                        .to_string(),
                );
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    found.sort();
    assert_eq!(
        found,
        [
            "src/alloc.rs",
            "src/cli/input.rs",
            "src/transport/as4/tls_session.rs",
            "src/transport/email/smime/cms_ffi.rs"
        ]
    );
}
