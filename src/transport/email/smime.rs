//! S/MIME for the BDEW e-mail transport: sign, then encrypt a MIME entity, and the reverse.
//!
//! What it does: [`sign_then_encrypt`] turns the MIME entity that carries an interchange into
//! the S/MIME entity of the mail (`application/pkcs7-mime; smime-type=authEnveloped-data`);
//! [`decrypt_then_verify`] takes a received mail (or just its S/MIME entity), decrypts it with
//! our key, checks the signature against the partner certificates it is given and returns the
//! signed MIME entity with the signer's certificate. What it does not do: build or parse the
//! mail around the interchange (attachment, subject), SMTP/IMAP, choose the partner's
//! certificates, or check certificate chains, validity dates and CRLs (the partner registry's
//! job: here a signer is trusted when its certificate is one of `trusted_signers`). No I/O
//! except [`Identity::from_pem_files`] / [`Certificate::from_pem_file`].
//!
//! # Format (S/MIME 4.0 / RFC 8551 form of the RFC 5751 rules the BDEW RzÜ names)
//!
//! - **Signed entity: opaque signed-data** (`application/pkcs7-mime; smime-type=signed-data`),
//!   content inside the CMS SignedData. Chosen over multipart/signed because the signed bytes
//!   travel inside DER (no boundary or line-ending canonicalisation to get wrong), it is what
//!   `openssl cms -sign -nodetach` writes, and `openssl cms -verify` reads it without options.
//!   On input both forms are read (receiving agents must handle both, RFC 8551 §3.5).
//! - **Encryption: RFC 5083 AuthEnvelopedData with AES-128-GCM** (RFC 5084, 16-byte tag).
//!   On input also EnvelopedData with AES-GCM (the tag appended to the ciphertext: the second
//!   form seen in the market, Mitteilung 45 of the BNetzA; the exact layout is our inference)
//!   and EnvelopedData with AES-CBC (legacy partners).
//! - **Algorithms by key** (signer's key for the signature, recipient's certificate for the
//!   key management):
//!   - EC (brainpoolP256r1 in the SM-PKI): ECDSA with SHA-256; KeyAgreeRecipientInfo with
//!     ephemeral-static ECDH `dhSinglePass-stdDH-sha256kdf-scheme` (RFC 5753) and
//!     `id-aes128-wrap`.
//!   - RSA (≥ 2048 bits): RSASSA-PSS with SHA-256, MGF1-SHA-256, salt length 32 (RFC 4056);
//!     KeyTransRecipientInfo with RSAES-OAEP, SHA-256, MGF1-SHA-256 (RFC 3560).
//!
//! # Why OpenSSL and the small FFI module
//!
//! OpenSSL's CMS code does all the cryptography and encoding (brainpool is missing from rustls
//! and most RustCrypto crates). The safe `openssl` crate only exposes `CMS_sign` and
//! `CMS_encrypt` with OpenSSL's default parameters (PKCS#1 v1.5, SHA-1 KDF), so the PSS, OAEP
//! and KDF settings go through `cms_ffi` (private), which makes the same C calls as
//! `openssl cms -keyopt` — the one place in the crate where `unsafe` is allowed (the lint is
//! `deny`, not `forbid`, for that reason). The alternatives: the RustCrypto `cms` crate (0.2)
//! with openssl primitives would mean hand-building KARI, the ECC-CMS-SharedInfo KDF input,
//! the OAEP/PSS parameter encodings and AuthEnvelopedData (which that crate lacks), several
//! hundred lines where an error only shows in interop; keys of type RSA-PSS would give PSS
//! without FFI but not OAEP, and would not match the partners' `rsaEncryption` certificates.
//! Decryption and verification need no FFI: OpenSSL reads the algorithms from the message.
//! The RustCrypto `cms` types are used only to read structure (content types, signer IDs) and
//! to re-encode EnvelopedData-with-GCM as AuthEnvelopedData for OpenSSL.

mod cms_ffi;

use std::fmt;
use std::path::{Path, PathBuf};

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::enveloped_data::{
    EncryptedContentInfo, EnvelopedData, KeyAgreeRecipientIdentifier, OriginatorInfo,
    RecipientIdentifier, RecipientInfo, RecipientInfos,
};
use cms::signed_data::{SignedData, SignerIdentifier};
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Any, Decode, Encode};
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, PKeyRef, Private};
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::{X509Ref, X509};
use x509_cert::attr::Attributes;

use crate::transport::smpki::{check_sm_pki_naming, name_line, party_line};

use cms_ffi::{CmsCallError, KeyOpt};

/// Largest content we sign and encrypt: OpenSSL takes lengths as `int`, and the signed entity
/// (base64, a third larger) must fit too. Mails are far smaller.
pub const MAX_CONTENT_LEN: usize = i32::MAX as usize / 2;

/// Base64 line length in the MIME entities we write (RFC 2045 §6.8: at most 76).
const BASE64_LINE: usize = 76;

/// Minimum RSA modulus we sign or encrypt with (the BDEW rules ask for at least 2048 bits).
const MIN_RSA_BITS: u32 = 2048;

const OID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const OID_ENVELOPED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
const OID_AUTH_ENVELOPED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.23");
/// id-aes128-GCM, id-aes192-GCM, id-aes256-GCM (RFC 5084).
const OIDS_AES_GCM: [ObjectIdentifier; 3] = [
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.6"),
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.26"),
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.46"),
];

/// Signer: PSS over SHA-256 with a salt as long as the digest (RFC 4056 §3.1 recommends it).
const RSA_PSS_OPTS: &[KeyOpt] = &[
    (c"rsa_padding_mode", c"pss"),
    (c"rsa_pss_saltlen", c"digest"),
];
/// Recipient: OAEP with SHA-256 and MGF1-SHA-256 (OpenSSL's OAEP default is SHA-1).
const RSA_OAEP_OPTS: &[KeyOpt] = &[
    (c"rsa_padding_mode", c"oaep"),
    (c"rsa_oaep_md", c"sha256"),
    (c"rsa_mgf1_md", c"sha256"),
];
/// Recipient: the X9.63 KDF with SHA-256 (OpenSSL's default for CMS ECDH is SHA-1).
const ECDH_OPTS: &[KeyOpt] = &[(c"ecdh_kdf_md", c"sha256")];

/// Errors of this module; each names what failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmimeError {
    /// A key or certificate file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A private key or certificate is not valid PEM.
    #[error("cannot read the {what} from PEM: {}", in_words(source))]
    Pem {
        /// "private key" or "certificate".
        what: &'static str,
        /// OpenSSL's reasons.
        source: ErrorStack,
    },
    /// The private key does not belong to the certificate.
    #[error("the private key does not belong to the certificate of {subject}")]
    KeyMismatch {
        /// Subject of the certificate.
        subject: String,
    },
    /// A key that is neither EC nor RSA of at least 2048 bits.
    #[error("unsupported key in the certificate of {subject}: {found} (expected EC, or RSA with at least 2048 bits)")]
    UnsupportedKey {
        /// Subject of the certificate.
        subject: String,
        /// What the key is.
        found: String,
    },
    /// The content to sign is larger than [`MAX_CONTENT_LEN`].
    #[error("content of {len} bytes is larger than the {max} bytes we sign")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// OpenSSL failed while signing or encrypting.
    #[error("cannot {step}: {}", in_words(source))]
    Build {
        /// "sign" or "encrypt".
        step: &'static str,
        /// OpenSSL's reasons.
        source: ErrorStack,
    },
    /// The input is not a MIME entity or its CMS structure cannot be read.
    #[error("malformed S/MIME: {detail}")]
    Malformed {
        /// What could not be read.
        detail: String,
    },
    /// The mail is not encrypted (for example plain text, or signed only).
    #[error("the mail is not encrypted: found {found}")]
    NotEncrypted {
        /// The content type or CMS type found.
        found: String,
    },
    /// The mail is encrypted, but not for our certificate.
    #[error("the mail is encrypted for someone else: no recipient is our certificate ({ours})")]
    NotForUs {
        /// Subject of our certificate.
        ours: String,
    },
    /// The mail is encrypted for us but does not decrypt: the key does not unwrap, or the
    /// ciphertext or its authentication tag was changed.
    #[error("cannot decrypt the mail: {failure}")]
    CannotDecrypt {
        /// What failed, in words.
        failure: DecryptFailure,
    },
    /// The decrypted content carries no signature.
    #[error("not signed: the decrypted content is {found}")]
    Unsigned {
        /// The content type or CMS type found (`multipart/mixed`, `enveloped-data`), or
        /// `a bare interchange (…)`.
        found: String,
    },
    /// The signer is none of the trusted signers.
    #[error("signed by {signer}, which is not among the trusted signers")]
    SignerNotTrusted {
        /// Who signed: the market partner ID, CN and OU of the signer's certificate when the
        /// mail carries it (`9900000000029 (CN=…, OU=9900000000029)`), else the issuer and
        /// serial number or subject key identifier the signature names.
        signer: String,
        /// The signer's certificate as the mail carries it (not trusted: for naming only).
        certificate: Option<Certificate>,
    },
    /// The signature of a trusted signer does not match the content.
    #[error("the signature of {signer} does not verify: {problem}")]
    BadSignature {
        /// Who signed ([`Certificate::party`]).
        signer: String,
        /// What does not match, in words.
        problem: SignatureProblem,
    },
}

/// Why a mail addressed to our certificate does not decrypt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptFailure {
    /// The content-encryption key does not unwrap with our private key.
    #[error(
        "the content key does not unwrap with our key (the wrapped key or the sender's \
         key-agreement data was changed, or the mail was encrypted to another key pair)"
    )]
    KeyDoesNotUnwrap,
    /// AES-GCM: the authentication tag does not match the ciphertext.
    #[error(
        "the encrypted content or its key was changed after it was encrypted (the AES-GCM \
         authentication tag does not match)"
    )]
    ContentChanged,
    /// AES-CBC: the padding of the last block is wrong.
    #[error(
        "the encrypted content was changed after it was encrypted, or encrypted with another \
         key (the AES-CBC padding does not check)"
    )]
    BadPadding,
    /// Anything else, in OpenSSL's words (without its codes and source paths).
    #[error("{0}")]
    Other(String),
}

impl DecryptFailure {
    /// Reads OpenSSL's error queue after a failed decryption; `authenticated` for AES-GCM.
    /// OpenSSL 3 reports a GCM tag that does not match with an empty queue.
    fn of(stack: &ErrorStack, authenticated: bool) -> DecryptFailure {
        let named = |needles: &[&str]| {
            stack.errors().iter().any(|e| {
                let text = format!(
                    "{} {}",
                    e.function().unwrap_or(""),
                    e.reason().unwrap_or("")
                )
                .to_ascii_lowercase();
                needles.iter().any(|n| text.contains(n))
            })
        };
        if named(&[
            "wrap",
            "kari",
            "ktri",
            "pkey_decrypt",
            "oaep",
            "decoding error",
        ]) {
            DecryptFailure::KeyDoesNotUnwrap
        } else if authenticated {
            DecryptFailure::ContentChanged
        } else if named(&["bad decrypt"]) {
            DecryptFailure::BadPadding
        } else {
            DecryptFailure::Other(in_words(stack))
        }
    }
}

/// Why a signature of a trusted signer does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureProblem {
    /// The signed content (or its digest attribute) does not match the signature.
    #[error("content changed after signing (signature does not match)")]
    ContentChanged,
    /// Anything else, in OpenSSL's words (without its codes and source paths).
    #[error("{0}")]
    Other(String),
}

impl SignatureProblem {
    fn of(stack: &ErrorStack) -> SignatureProblem {
        let changed = stack.errors().iter().any(|e| {
            matches!(
                e.reason(),
                Some("verification failure" | "content verify error" | "digest failure")
            )
        });
        if changed {
            SignatureProblem::ContentChanged
        } else {
            SignatureProblem::Other(in_words(stack))
        }
    }
}

/// OpenSSL's reasons in words: each distinct reason once, without error codes and the source
/// file paths of OpenSSL's build (they tell an operator nothing).
fn in_words(stack: &ErrorStack) -> String {
    let mut reasons: Vec<String> = Vec::new();
    for e in stack.errors() {
        let reason = e
            .reason()
            .map(str::to_string)
            .or_else(|| e.function().map(|f| format!("failure in {f}")))
            .unwrap_or_else(|| "unknown failure".into());
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }
    if reasons.is_empty() {
        "no reason given by OpenSSL".into()
    } else {
        reasons.join("; ")
    }
}

/// An X.509 certificate (a partner's, or ours).
#[derive(Clone)]
pub struct Certificate {
    x509: X509,
}

impl Certificate {
    /// Reads the first certificate of a PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<Certificate, SmimeError> {
        X509::from_pem(pem)
            .map(|x509| Certificate { x509 })
            .map_err(|source| SmimeError::Pem {
                what: "certificate",
                source,
            })
    }

    /// Reads the first certificate of a PEM file.
    pub fn from_pem_file(path: &Path) -> Result<Certificate, SmimeError> {
        Certificate::from_pem(&read(path)?)
    }

    /// The OpenSSL certificate.
    pub fn x509(&self) -> &X509Ref {
        &self.x509
    }

    /// The subject as one line (`C=DE, O=…, OU=…, CN=…`).
    pub fn subject(&self) -> String {
        name_line(self.x509.subject_name())
    }

    /// The issuer as one line.
    pub fn issuer(&self) -> String {
        name_line(self.x509.issuer_name())
    }

    /// The serial number in hex.
    pub fn serial_hex(&self) -> String {
        self.x509
            .serial_number()
            .to_bn()
            .and_then(|bn| bn.to_hex_str().map(|s| s.to_string()))
            .unwrap_or_default()
    }

    /// Who the certificate stands for, as operators read it: `9900000000011 (CN=Netz EMT.MAK,
    /// OU=9900000000011)` for an SM-PKI certificate, its subject in parentheses otherwise.
    pub fn party(&self) -> String {
        party_line(&self.x509)
    }

    /// The DER encoding.
    pub fn to_der(&self) -> Vec<u8> {
        // i2d of a certificate read from PEM cannot fail (OpenSSL keeps its encoding).
        self.x509.to_der().unwrap_or_default()
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.to_der() == other.to_der()
    }
}

impl Eq for Certificate {}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject())
            .field("issuer", &self.issuer())
            .field("serial", &self.serial_hex())
            .finish()
    }
}

/// Our private key with its certificate (for signing, or for decrypting what partners send).
#[derive(Clone)]
pub struct Identity {
    key: PKey<Private>,
    cert: Certificate,
}

impl Identity {
    /// Reads a private key (PKCS#8 or traditional PEM, unencrypted) and its certificate, and
    /// checks that they belong together.
    pub fn from_pem(key_pem: &[u8], cert_pem: &[u8]) -> Result<Identity, SmimeError> {
        let key = PKey::private_key_from_pem(key_pem).map_err(|source| SmimeError::Pem {
            what: "private key",
            source,
        })?;
        let cert = Certificate::from_pem(cert_pem)?;
        let matches = cert
            .x509
            .public_key()
            .map(|public| public.public_eq(&key))
            .unwrap_or(false);
        if !matches {
            return Err(SmimeError::KeyMismatch {
                subject: cert.subject(),
            });
        }
        Ok(Identity { key, cert })
    }

    /// Reads the private key and the certificate from two PEM files.
    pub fn from_pem_files(key_path: &Path, cert_path: &Path) -> Result<Identity, SmimeError> {
        Identity::from_pem(&read(key_path)?, &read(cert_path)?)
    }

    /// The certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Identity")
            .field("certificate", &self.cert)
            .finish_non_exhaustive()
    }
}

/// The algorithm family of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// Elliptic curve (brainpoolP256r1 in the SM-PKI): ECDSA and ECDH.
    Ecc,
    /// RSA: RSASSA-PSS and RSAES-OAEP.
    Rsa,
}

impl KeyFamily {
    /// The family of a certificate's key, or why it is not one we use.
    pub fn of(cert: &Certificate) -> Result<KeyFamily, SmimeError> {
        let key = cert
            .x509
            .public_key()
            .map_err(|_| SmimeError::UnsupportedKey {
                subject: cert.subject(),
                found: "a public key OpenSSL cannot read".into(),
            })?;
        family_of(&key, cert)
    }
}

fn family_of<T: openssl::pkey::HasPublic>(
    key: &PKeyRef<T>,
    cert: &Certificate,
) -> Result<KeyFamily, SmimeError> {
    let unsupported = |found: String| SmimeError::UnsupportedKey {
        subject: cert.subject(),
        found,
    };
    match key.id() {
        Id::EC => Ok(KeyFamily::Ecc),
        Id::RSA if key.bits() >= MIN_RSA_BITS => Ok(KeyFamily::Rsa),
        Id::RSA => Err(unsupported(format!("RSA with {} bits", key.bits()))),
        other => Err(unsupported(format!("key type {}", other.as_raw()))),
    }
}

/// The market partner ID of an SM-PKI certificate: the subject OU when it is a market partner
/// ID (13 digits with a valid check digit) and the subject CN contains `EMT.MAK` (the SM-PKI
/// names certificates for market communication so). `None` when either is missing.
pub fn sm_pki_partner_id(cert: &Certificate) -> Option<String> {
    // One reading of SM-PKI names for both transports (the TLS checks of AS4 give the reason
    // when it fails).
    check_sm_pki_naming(&cert.x509, None)
        .ok()
        .map(|id| id.market_partner_id.into())
}

/// Signs `content_mime` (a complete MIME entity, headers and body, CRLF line ends) as opaque
/// signed-data with `signer`, then encrypts that to `recipient` as AuthEnvelopedData with
/// AES-128-GCM. Returns the S/MIME entity (headers and base64 body) that becomes the mail's
/// body; the caller adds From, To, Subject, Date and Message-ID.
pub fn sign_then_encrypt(
    content_mime: &[u8],
    signer: &Identity,
    recipient: &Certificate,
) -> Result<Vec<u8>, SmimeError> {
    if content_mime.len() > MAX_CONTENT_LEN {
        return Err(SmimeError::TooLarge {
            len: content_mime.len(),
            max: MAX_CONTENT_LEN,
        });
    }
    let sign_opts: &[KeyOpt] = match family_of(&signer.key, &signer.cert)? {
        KeyFamily::Ecc => &[],
        KeyFamily::Rsa => RSA_PSS_OPTS,
    };
    let encrypt_opts = match KeyFamily::of(recipient)? {
        KeyFamily::Ecc => ECDH_OPTS,
        KeyFamily::Rsa => RSA_OAEP_OPTS,
    };
    let build = |step| {
        move |e| match e {
            CmsCallError::OpenSsl(source) => SmimeError::Build { step, source },
            CmsCallError::TooLarge => SmimeError::TooLarge {
                len: content_mime.len(),
                max: MAX_CONTENT_LEN,
            },
        }
    };
    // BINARY: the content is already a canonical MIME entity; OpenSSL must not touch line ends.
    let signed = cms_ffi::sign(
        content_mime,
        &signer.cert.x509,
        &signer.key,
        MessageDigest::sha256(),
        sign_opts,
        CMSOptions::BINARY,
    )
    .map_err(build("sign"))?;
    let signed_der = signed.to_der().map_err(|source| SmimeError::Build {
        step: "encode the signed data",
        source,
    })?;
    let signed_entity = smime_entity("signed-data", &signed_der);
    let encrypted = cms_ffi::encrypt(
        &signed_entity,
        &recipient.x509,
        Cipher::aes_128_gcm(),
        encrypt_opts,
        CMSOptions::BINARY,
    )
    .map_err(build("encrypt"))?;
    let encrypted_der = encrypted.to_der().map_err(|source| SmimeError::Build {
        step: "encode the encrypted data",
        source,
    })?;
    Ok(smime_entity("authEnveloped-data", &encrypted_der))
}

/// What [`decrypt_then_verify`] found.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The signed MIME entity (for example the multipart/mixed with the interchange).
    pub content: Vec<u8>,
    /// The certificate (one of the trusted ones) whose key made the signature.
    pub signer: Certificate,
}

/// Decrypts a received mail (the whole RFC 5322 message or its S/MIME entity) with `own`, then
/// verifies the signature inside against `trusted_signers` and returns the signed content.
///
/// Encrypted: AuthEnvelopedData (AES-GCM), EnvelopedData with AES-GCM or AES-CBC. Signed:
/// opaque signed-data or multipart/signed. Every signer must be one of `trusted_signers`
/// (matched by issuer and serial number or by subject key identifier; chains and CRLs are not
/// checked here).
pub fn decrypt_then_verify(
    mail_body: &[u8],
    own: &Identity,
    trusted_signers: &[Certificate],
) -> Result<Verified, SmimeError> {
    let outer = MimeHead::read(mail_body)?;
    if !outer.is_pkcs7_mime() {
        return Err(SmimeError::NotEncrypted {
            found: outer.media_type,
        });
    }
    let cms = read_cms(mail_body)?;
    let der = cms_der(&cms)?;
    let info = content_info(&der)?;
    // `authenticated`: AES-GCM, whose tag detects any change of the ciphertext.
    let (envelope, recipients, authenticated) = if info.content_type == OID_AUTH_ENVELOPED_DATA {
        let auth = info
            .content
            .decode_as::<AuthEnvelopedData>()
            .map_err(|e| malformed("auth-enveloped-data", e))?;
        (cms, auth.recip_infos, true)
    } else if info.content_type == OID_ENVELOPED_DATA {
        let env = info
            .content
            .decode_as::<EnvelopedData>()
            .map_err(|e| malformed("enveloped-data", e))?;
        match enveloped_gcm_as_auth_enveloped(&env)? {
            Some(converted) => (converted, env.recip_infos, true),
            None => (cms, env.recip_infos, false),
        }
    } else {
        return Err(SmimeError::NotEncrypted {
            found: cms_type_name(&info.content_type),
        });
    };
    // Decided from the structure, not from OpenSSL's error queue: OpenSSL reports a missing
    // recipient of our key type with an empty queue.
    if !addressed_to(&recipients, &own.cert) {
        return Err(SmimeError::NotForUs {
            ours: own.cert.subject(),
        });
    }
    let inner = envelope
        .decrypt(&own.key, &own.cert.x509)
        .map_err(|stack| SmimeError::CannotDecrypt {
            failure: DecryptFailure::of(&stack, authenticated),
        })?;
    verify_signed_entity(&inner, trusted_signers).map_err(|e| match e {
        // AES-CBC cannot tell a changed ciphertext: it decrypts to garbage, found here.
        SmimeError::Malformed { detail } if !authenticated => SmimeError::Malformed {
            detail: format!(
                "{detail} (the mail is AES-CBC encrypted, which does not detect a changed \
                 ciphertext: it may have been changed in transit)"
            ),
        },
        other => other,
    })
}

/// What decrypted content that is no MIME entity is: a bare interchange (an EDIFACT file
/// encrypted without the signed MIME entity around it) is unsigned; anything else is
/// malformed.
fn not_a_mime_entity(content: &[u8], why: SmimeError) -> SmimeError {
    let start = content
        .strip_prefix("\u{feff}".as_bytes())
        .unwrap_or(content)
        .trim_ascii_start();
    if start.starts_with(b"UNA") || start.starts_with(b"UNB+") {
        return SmimeError::Unsigned {
            found: "a bare interchange (EDIFACT without a MIME entity and without a signature)"
                .into(),
        };
    }
    match why {
        SmimeError::Malformed { detail } => SmimeError::Malformed {
            detail: format!("the decrypted content is {detail}"),
        },
        other => other,
    }
}

/// Verifies a signed MIME entity (opaque signed-data or multipart/signed).
fn verify_signed_entity(entity: &[u8], trusted: &[Certificate]) -> Result<Verified, SmimeError> {
    let head = MimeHead::read(entity).map_err(|e| not_a_mime_entity(entity, e))?;
    let detached = if head.media_type == "multipart/signed" {
        Some(first_part(entity, &head)?)
    } else if head.is_pkcs7_mime() {
        None
    } else {
        return Err(SmimeError::Unsigned {
            found: head.media_type,
        });
    };
    let mut cms = read_cms(entity)?;
    let der = cms_der(&cms)?;
    let info = content_info(&der)?;
    if info.content_type != OID_SIGNED_DATA {
        return Err(SmimeError::Unsigned {
            found: cms_type_name(&info.content_type),
        });
    }
    let signed = info
        .content
        .decode_as::<SignedData>()
        .map_err(|e| malformed("signed-data", e))?;
    let mut signer = None;
    for info in signed.signer_infos.0.iter() {
        let cert = trusted
            .iter()
            .find(|c| identifies(&info.sid, c))
            .ok_or_else(|| {
                // Named by the certificate the mail carries, when it carries the signer's:
                // its market partner ID says who it is (trusted for naming only).
                let certificate = carried_certificate(&signed, &info.sid);
                SmimeError::SignerNotTrusted {
                    signer: certificate
                        .as_ref()
                        .map_or_else(|| describe_sid(&info.sid), Certificate::party),
                    certificate,
                }
            })?;
        signer.get_or_insert(cert);
    }
    let signer = signer.ok_or(SmimeError::Unsigned {
        found: "signed-data without signer".into(),
    })?;
    let mut certs = Stack::new().map_err(|source| SmimeError::Build {
        step: "collect the signer certificates",
        source,
    })?;
    for c in trusted {
        certs
            .push(c.x509.clone())
            .map_err(|source| SmimeError::Build {
                step: "collect the signer certificates",
                source,
            })?;
    }
    // NOINTERN: the signer must be one of `trusted`, never a certificate the mail brings along;
    // NOVERIFY: no chain building here (the partner registry pins the certificates). Without
    // BINARY, detached content is canonicalised to CRLF as RFC 8551 §3.1.1 asks.
    let mut content = Vec::new();
    cms.verify(
        Some(&certs),
        None,
        detached,
        Some(&mut content),
        CMSOptions::NOINTERN | CMSOptions::NOVERIFY,
    )
    .map_err(|stack| SmimeError::BadSignature {
        signer: signer.party(),
        problem: SignatureProblem::of(&stack),
    })?;
    let content = match detached {
        Some(part) => part.to_vec(),
        None => content,
    };
    Ok(Verified {
        content,
        signer: signer.clone(),
    })
}

/// Whether a SignerIdentifier names `cert`.
fn identifies(sid: &SignerIdentifier, cert: &Certificate) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => is_issuer_and_serial(ias, cert),
        SignerIdentifier::SubjectKeyIdentifier(ski) => has_key_id(&ski.0, cert),
    }
}

/// The certificate among those a SignedData carries that `sid` names.
fn carried_certificate(signed: &SignedData, sid: &SignerIdentifier) -> Option<Certificate> {
    signed
        .certificates
        .as_ref()?
        .0
        .iter()
        .filter_map(|choice| match choice {
            cms::cert::CertificateChoices::Certificate(c) => c.to_der().ok(),
            _ => None,
        })
        .filter_map(|der| X509::from_der(&der).ok())
        .map(|x509| Certificate { x509 })
        .find(|c| identifies(sid, c))
}

/// Whether one of the recipient infos names `cert` (key transport or key agreement).
fn addressed_to(recipients: &RecipientInfos, cert: &Certificate) -> bool {
    recipients.0.iter().any(|ri| match ri {
        RecipientInfo::Ktri(ktri) => match &ktri.rid {
            RecipientIdentifier::IssuerAndSerialNumber(ias) => is_issuer_and_serial(ias, cert),
            RecipientIdentifier::SubjectKeyIdentifier(ski) => has_key_id(&ski.0, cert),
        },
        RecipientInfo::Kari(kari) => kari.recipient_enc_keys.iter().any(|rek| match &rek.rid {
            KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(ias) => {
                is_issuer_and_serial(ias, cert)
            }
            KeyAgreeRecipientIdentifier::RKeyId(rkey) => {
                has_key_id(&rkey.subject_key_identifier.0, cert)
            }
        }),
        // Key-encryption keys and passwords are not used in BDEW e-mail.
        _ => false,
    })
}

fn is_issuer_and_serial(ias: &IssuerAndSerialNumber, cert: &Certificate) -> bool {
    x509_cert::Certificate::from_der(&cert.to_der()).is_ok_and(|parsed| {
        parsed.tbs_certificate.issuer == ias.issuer
            && parsed.tbs_certificate.serial_number == ias.serial_number
    })
}

fn has_key_id(key_id: &OctetString, cert: &Certificate) -> bool {
    cert.x509
        .subject_key_id()
        .is_some_and(|own| own.as_slice() == key_id.as_bytes())
}

fn describe_sid(sid: &SignerIdentifier) -> String {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer,
            serial_number,
        }) => format!(
            "issuer {issuer}, serial {}",
            hex::encode_upper(serial_number.as_bytes())
        ),
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            format!(
                "subject key identifier {}",
                hex::encode_upper(ski.0.as_bytes())
            )
        }
    }
}

/// AuthEnvelopedData (RFC 5083 §2.1); the RustCrypto `cms` crate 0.2 has no type for it.
#[derive(Clone, Debug, Eq, PartialEq, der::Sequence)]
struct AuthEnvelopedData {
    version: CmsVersion,
    #[asn1(
        context_specific = "0",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    originator_info: Option<OriginatorInfo>,
    recip_infos: RecipientInfos,
    auth_encrypted_content: EncryptedContentInfo,
    #[asn1(
        context_specific = "1",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    auth_attrs: Option<Attributes>,
    mac: OctetString,
    #[asn1(
        context_specific = "2",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    unauth_attrs: Option<Attributes>,
}

/// GCMParameters (RFC 5084 §3.2).
#[derive(Clone, Debug, Eq, PartialEq, der::Sequence)]
struct GcmParameters {
    nonce: OctetString,
    #[asn1(default = "default_icv_len")]
    icv_len: u8,
}

fn default_icv_len() -> u8 {
    12
}

/// An EnvelopedData whose content is AES-GCM encrypted, re-encoded as the AuthEnvelopedData it
/// means: the last `aes-ICVlen` bytes of the ciphertext become the `mac`, the unprotected
/// attributes the unauthenticated ones. Neither form has authenticated attributes, so GCM's
/// additional data is empty in both and the re-encoding changes nothing OpenSSL checks.
/// `None` for EnvelopedData with another cipher (OpenSSL decrypts those as they are).
fn enveloped_gcm_as_auth_enveloped(
    env: &EnvelopedData,
) -> Result<Option<CmsContentInfo>, SmimeError> {
    let eci = &env.encrypted_content;
    if !OIDS_AES_GCM.contains(&eci.content_enc_alg.oid) {
        return Ok(None);
    }
    let params = eci
        .content_enc_alg
        .parameters
        .as_ref()
        .ok_or_else(|| SmimeError::Malformed {
            detail: "AES-GCM without GCMParameters".into(),
        })?
        .decode_as::<GcmParameters>()
        .map_err(|e| malformed("GCMParameters", e))?;
    let sealed = eci
        .encrypted_content
        .as_ref()
        .ok_or_else(|| SmimeError::Malformed {
            detail: "enveloped-data without encrypted content".into(),
        })?
        .as_bytes();
    let icv_len = usize::from(params.icv_len);
    if !(12..=16).contains(&icv_len) || sealed.len() < icv_len {
        return Err(SmimeError::Malformed {
            detail: format!(
                "AES-GCM tag of {icv_len} bytes in {} bytes of ciphertext",
                sealed.len()
            ),
        });
    }
    let (ciphertext, tag) = sealed.split_at(sealed.len() - icv_len);
    let octets = |bytes: &[u8]| {
        OctetString::new(bytes.to_vec()).map_err(|e| malformed("the encrypted content", e))
    };
    let auth = AuthEnvelopedData {
        version: CmsVersion::V0,
        originator_info: env.originator_info.clone(),
        recip_infos: env.recip_infos.clone(),
        auth_encrypted_content: EncryptedContentInfo {
            content_type: eci.content_type,
            content_enc_alg: eci.content_enc_alg.clone(),
            encrypted_content: Some(octets(ciphertext)?),
        },
        auth_attrs: None,
        mac: octets(tag)?,
        unauth_attrs: env.unprotected_attrs.clone(),
    };
    let content = Any::encode_from(&auth).map_err(|e| malformed("auth-enveloped-data", e))?;
    let der = ContentInfo {
        content_type: OID_AUTH_ENVELOPED_DATA,
        content,
    }
    .to_der()
    .map_err(|e| malformed("auth-enveloped-data", e))?;
    CmsContentInfo::from_der(&der)
        .map(Some)
        .map_err(|e| SmimeError::Malformed {
            detail: format!("re-encoded enveloped-data: {}", in_words(&e)),
        })
}

fn malformed(what: &str, e: der::Error) -> SmimeError {
    SmimeError::Malformed {
        detail: format!("cannot read the {what}: {e}"),
    }
}

/// Reads the CMS of an S/MIME entity (`application/pkcs7-mime` or `multipart/signed`).
fn read_cms(entity: &[u8]) -> Result<CmsContentInfo, SmimeError> {
    // Not `CmsContentInfo::smime_read_cms`: its error handling panics on header bytes that
    // are not UTF-8 (see `cms_ffi`).
    cms_ffi::smime_read(entity).map_err(|e| SmimeError::Malformed {
        detail: format!("cannot read the CMS of the S/MIME entity: {e}"),
    })
}

/// The DER of a CMS structure: OpenSSL reads BER (indefinite lengths, constructed octet
/// strings) and writes DER, which the `der` crate then reads.
fn cms_der(cms: &CmsContentInfo) -> Result<Vec<u8>, SmimeError> {
    cms.to_der().map_err(|e| SmimeError::Malformed {
        detail: format!("cannot encode the CMS structure: {}", in_words(&e)),
    })
}

fn content_info(der: &[u8]) -> Result<ContentInfo, SmimeError> {
    ContentInfo::from_der(der).map_err(|e| malformed("CMS content info", e))
}

fn cms_type_name(oid: &ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.2.840.113549.1.7.1" => "data".into(),
        "1.2.840.113549.1.7.2" => "signed-data".into(),
        "1.2.840.113549.1.7.3" => "enveloped-data".into(),
        "1.2.840.113549.1.9.16.1.2" => "authenticated-data".into(),
        "1.2.840.113549.1.9.16.1.9" => "compressed-data".into(),
        "1.2.840.113549.1.9.16.1.23" => "auth-enveloped-data".into(),
        other => format!("CMS content type {other}"),
    }
}

/// An S/MIME entity: headers, a blank line, the DER in base64 lines (RFC 8551 §3.2).
fn smime_entity(smime_type: &str, der: &[u8]) -> Vec<u8> {
    let b64 = openssl::base64::encode_block(der);
    let mut out = format!(
        "Content-Type: application/pkcs7-mime; smime-type={smime_type}; name=\"smime.p7m\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"smime.p7m\"\r\n\r\n"
    )
    .into_bytes();
    for line in b64.as_bytes().chunks(BASE64_LINE) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The Content-Type of a MIME entity and where its body starts.
#[derive(Debug)]
struct MimeHead {
    /// Lower-case `type/subtype`; `text/plain` when the header is missing (RFC 2045 §5.2).
    media_type: String,
    /// Parameters, names lower-case, values unquoted.
    params: Vec<(String, String)>,
    /// Offset of the body.
    body: usize,
}

impl MimeHead {
    fn read(entity: &[u8]) -> Result<MimeHead, SmimeError> {
        let not_mime = |why: &str| SmimeError::Malformed {
            detail: format!("not a MIME entity: {why}"),
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut pos = 0;
        loop {
            let rest = &entity[pos..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                return Err(not_mime("no blank line after the headers"));
            };
            let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
            pos += nl + 1;
            if line.is_empty() {
                break;
            }
            let line = std::str::from_utf8(line).map_err(|_| not_mime("a header is not text"))?;
            if line.starts_with([' ', '\t']) {
                let (_, value) = headers
                    .last_mut()
                    .ok_or_else(|| not_mime("continuation line before the first header"))?;
                value.push(' ');
                value.push_str(line.trim());
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .filter(|(name, _)| {
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                })
                .ok_or_else(|| not_mime("a line in the header section is not a header"))?;
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        let content_type = headers
            .iter()
            .find(|(name, _)| name == "content-type")
            .map(|(_, value)| value.as_str())
            .unwrap_or("text/plain");
        let mut parts = content_type.split(';');
        let media_type = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let params = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_string(),
                )
            })
            .collect();
        Ok(MimeHead {
            media_type,
            params,
            body: pos,
        })
    }

    fn is_pkcs7_mime(&self) -> bool {
        matches!(
            self.media_type.as_str(),
            "application/pkcs7-mime" | "application/x-pkcs7-mime"
        )
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The first body part of a multipart/signed entity, without the CRLF before the next
/// delimiter (it belongs to the delimiter, RFC 2046 §5.1.1): the signed content.
fn first_part<'a>(entity: &'a [u8], head: &MimeHead) -> Result<&'a [u8], SmimeError> {
    let bad = |why: &str| SmimeError::Malformed {
        detail: format!("multipart/signed: {why}"),
    };
    let boundary = head
        .param("boundary")
        .ok_or_else(|| bad("no boundary parameter"))?;
    let delimiter = format!("--{boundary}");
    let body = &entity[head.body..];
    let mut start = None;
    let mut at = 0;
    while let Some(found) = find(&body[at..], delimiter.as_bytes()) {
        let i = at + found;
        let line_start = i == 0 || body[i - 1] == b'\n';
        if line_start {
            match start {
                None => {
                    let nl = body[i..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .ok_or_else(|| bad("nothing after the first delimiter"))?;
                    start = Some(i + nl + 1);
                }
                Some(s) => {
                    let mut end = i - 1;
                    if end > s && body[end - 1] == b'\r' {
                        end -= 1;
                    }
                    return Ok(&body[s..end.max(s)]);
                }
            }
        }
        at = i + delimiter.len();
    }
    Err(bad("fewer than two body parts"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn read(path: &Path) -> Result<Vec<u8>, SmimeError> {
    std::fs::read(path).map_err(|source| SmimeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_content_type_and_body_offset() {
        let head = MimeHead::read(
            b"Content-Type: multipart/signed;\r\n boundary=\"b1\"; micalg=sha-256\r\n\r\nbody",
        )
        .unwrap();
        assert_eq!(head.media_type, "multipart/signed");
        assert_eq!(head.param("boundary"), Some("b1"));
        assert_eq!(head.body, 67);
    }

    #[test]
    fn missing_content_type_is_text_plain() {
        let head = MimeHead::read(b"Subject: x\n\nhello").unwrap();
        assert_eq!(head.media_type, "text/plain");
    }

    #[test]
    fn rejects_bytes_without_a_header_section() {
        assert!(matches!(
            MimeHead::read(b"\x00\x01garbage without newline"),
            Err(SmimeError::Malformed { .. })
        ));
        assert!(matches!(
            MimeHead::read(b"no header here\n\nbody"),
            Err(SmimeError::Malformed { .. })
        ));
    }

    #[test]
    fn first_part_excludes_the_crlf_before_the_delimiter() {
        let entity = b"Content-Type: multipart/signed; boundary=xx\r\n\r\n\
            preamble\r\n--xx\r\nContent-Type: text/plain\r\n\r\nhi\r\n--xx\r\nsig\r\n--xx--\r\n";
        let head = MimeHead::read(entity).unwrap();
        assert_eq!(
            first_part(entity, &head).unwrap(),
            b"Content-Type: text/plain\r\n\r\nhi"
        );
    }

    #[test]
    fn smime_entity_wraps_base64_at_76() {
        let entity = smime_entity("signed-data", &[0u8; 100]);
        let text = String::from_utf8(entity).unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        assert!(body.lines().all(|l| l.len() <= BASE64_LINE));
    }
}
