//! SM-PKI checks, shared by the AS4 and e-mail transports: who a certificate names (market
//! partner ID, `EMT.MAK`: TLS peers, AS4 signers, S/MIME certificates) and
//! whether its CA has revoked it (CRL from the certificate's distribution point).
//!
//! What this module does:
//! - [`check_sm_pki_naming`] (pure): the subject CN must contain `EMT.MAK` and one subject OU
//!   must be a 13-digit market partner ID, the expected one when the caller knows it. Sources,
//!   as `transport.md` §1.7 quotes them: phase4 `validateInitiatorIdentity` (TLS client and
//!   signature certificate: CN containing `EMT.MAK`, OU equal to `eb:From/eb:PartyId`) and
//!   RzÜ AS4 2.6 §5.2 as quoted by asx-rs ("Das Feld Organisational Unit („OU") des Subject
//!   muss die MP-ID enthalten").
//! - [`CrlCache`]: revocation by CRL only (the SM-PKI has no OCSP for market communication,
//!   `transport.md` §1.7). The CRL comes from the certificate's `http://` CRL distribution
//!   point through an injected [`CrlFetcher`], its signature is checked against the issuing CA
//!   among the trust anchors, and it is kept until its `nextUpdate`.
//!
//! What it does not do: chain building (OpenSSL does that in the TLS handshake, against the
//! same anchors), revocation of intermediate CAs, indirect CRLs (a CRL signed by a key other
//! than the issuing CA's; asx-rs handles the SM-PKI root's indirect CRL for signature
//! certificates with its own `crl_signer`), delta CRLs, LDAP distribution points.
//!
//! # When no CRL can be had
//!
//! RzÜ AS4 2.6 §5.4 (quoted by asx-rs, `transport.md` §1.7): if a CA's CRL is unobtainable for
//! 3 days or not renewed in time, that CA and everything under it is no longer trusted. Our
//! reading (not checked against the PDF): when the distribution point cannot be reached, the
//! last good CRL is still used until 3 days after its `nextUpdate` ([`CRL_GRACE`]); after
//! that, and whenever the CA serves
//! a CRL whose `nextUpdate` has already passed ("not renewed in time"), the answer is
//! [`RevocationStatus::Unavailable`], and the TLS layer refuses the peer (fail closed), naming
//! the URL.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::nid::Nid;
use openssl::x509::{CrlStatus, X509Crl, X509NameRef, X509Ref, X509VerifyResult, X509};

use crate::ids::MarketPartnerId;

/// What an SM-PKI certificate for market communication must carry in its subject CN.
pub const EMT_MAK: &str = "EMT.MAK";

/// How long after a CRL's `nextUpdate` it is still used while no newer one can be fetched
/// (RzÜ AS4 2.6 §5.4: 3 days of unobtainable CRL before the CA is distrusted).
pub const CRL_GRACE: chrono::Duration = chrono::Duration::days(3);

/// After a failed download, the same URL is not tried again for this long: a dead distribution
/// point must not add a fetch timeout to every connection.
pub const CRL_RETRY_AFTER_FAILURE: chrono::Duration = chrono::Duration::seconds(60);

/// A boxed error of a fetcher.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed, sendable future (the shape of `asx::BoxFuture`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The clock, injected so tests can move time.
pub use crate::clock::Clock;

/// Who a TLS peer is, read from its SM-PKI certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The market partner ID in the subject OU.
    pub market_partner_id: MarketPartnerId,
    /// The subject CN (contains `EMT.MAK`).
    pub common_name: String,
    /// The certificate serial number in hexadecimal.
    pub serial: String,
    /// The whole subject on one line (`C=DE, O=…, OU=…, CN=…`), for logs.
    pub subject: String,
}

/// A certificate that is not named as an SM-PKI market communication certificate of the
/// expected partner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SmPkiError {
    /// No subject CN contains `EMT.MAK`.
    #[error("certificate `{subject}` has no subject CN containing `EMT.MAK`: not an SM-PKI market communication certificate")]
    NotEmtMak {
        /// The subject on one line.
        subject: String,
    },
    /// No subject OU is a 13-digit market partner ID.
    #[error("certificate `{subject}` has no subject OU that is a 13-digit market partner ID")]
    NoMarketPartnerId {
        /// The subject on one line.
        subject: String,
    },
    /// The OU names a market partner, but not the one expected.
    #[error("certificate `{subject}` is for market partner {found}, expected {expected}")]
    UnexpectedMarketPartner {
        /// The partner we expected.
        expected: MarketPartnerId,
        /// The partner the certificate names.
        found: MarketPartnerId,
        /// The subject on one line.
        subject: String,
    },
}

/// Checks that `cert` is an SM-PKI market communication certificate (CN containing `EMT.MAK`,
/// an OU that is a market partner ID) and, when `expected` is given, that one of its OUs is
/// that partner. Returns the identity it names.
///
/// With several market partner IDs among the OUs (not seen in the SM-PKI), the expected one
/// wins; without an expectation, the first.
pub fn check_sm_pki_naming(
    cert: &X509Ref,
    expected: Option<&MarketPartnerId>,
) -> Result<PeerIdentity, SmPkiError> {
    let subject_name = cert.subject_name();
    let subject = name_line(subject_name);
    let common_name = texts(subject_name, Nid::COMMONNAME)
        .into_iter()
        .find(|cn| cn.contains(EMT_MAK))
        .ok_or_else(|| SmPkiError::NotEmtMak {
            subject: subject.clone(),
        })?;
    let partners: Vec<MarketPartnerId> = texts(subject_name, Nid::ORGANIZATIONALUNITNAME)
        .into_iter()
        .filter_map(|ou| ou.parse().ok())
        .collect();
    let market_partner_id = match (expected, partners.first()) {
        (_, None) => return Err(SmPkiError::NoMarketPartnerId { subject }),
        (None, Some(first)) => first.clone(),
        (Some(expected), Some(first)) => match partners.iter().find(|p| *p == expected) {
            Some(p) => p.clone(),
            None => {
                return Err(SmPkiError::UnexpectedMarketPartner {
                    expected: expected.clone(),
                    found: first.clone(),
                    subject,
                })
            }
        },
    };
    Ok(PeerIdentity {
        market_partner_id,
        common_name,
        serial: serial_hex(cert),
        subject,
    })
}

/// The subject entries with `nid` that are readable text.
fn texts(name: &X509NameRef, nid: Nid) -> Vec<String> {
    name.entries_by_nid(nid)
        .filter_map(|e| e.data().to_string().ok())
        .collect()
}

/// A name on one line, `C=DE, O=…, CN=…` (shared with the S/MIME module). The values come
/// from partners' certificates and go into logs and operator views: control characters (a
/// line break would forge a log line) are shown as `?`.
pub(crate) fn name_line(name: &X509NameRef) -> String {
    name.entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_default();
            format!("{key}={}", without_controls(&value))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn without_controls(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Who a certificate stands for, in the words an operator acts on: the market partner ID of
/// an SM-PKI certificate with its CN and OU, `9900000000011 (CN=Netz EMT.MAK,
/// OU=9900000000011)`; for any other certificate its subject on one line in parentheses,
/// `(C=DE, O=…, CN=…)`.
pub fn party_line(cert: &X509Ref) -> String {
    match check_sm_pki_naming(cert, None) {
        Ok(identity) => format!(
            "{id} (CN={cn}, OU={id})",
            id = identity.market_partner_id,
            cn = without_controls(&identity.common_name)
        ),
        Err(_) => format!("({})", name_line(cert.subject_name())),
    }
}

fn serial_hex(cert: &X509Ref) -> String {
    cert.serial_number()
        .to_bn()
        .and_then(|bn| bn.to_hex_str().map(|s| s.to_string()))
        .unwrap_or_else(|_| "?".to_string())
}

// ---------------------------------------------------------------------------------------------
// Revocation

/// Downloads a CRL. The TLS layer supplies a plain-HTTP one
/// ([`crate::transport::as4::https::PlainHttpFetcher`]); tests supply bytes.
pub trait CrlFetcher: Send + Sync + fmt::Debug {
    /// The body of `GET url` (DER or PEM), or why it could not be had.
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Bytes, BoxError>>;
}

/// The revocation status of a certificate.
#[derive(Debug)]
pub enum RevocationStatus {
    /// Not on the CA's current CRL.
    Good,
    /// On the CA's CRL.
    Revoked {
        /// The certificate serial number in hexadecimal.
        serial: String,
        /// When the CA revoked it (`revocationDate`, as OpenSSL prints it).
        revoked_at: String,
    },
    /// No acceptable CRL: the certificate must not be trusted (fail closed).
    Unavailable(CrlUnavailable),
}

/// Why no acceptable CRL could be had for a certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrlUnavailable {
    /// None of the trust anchors issued the certificate, so no CRL signer is known.
    #[error(
        "no trust anchor issued `{subject}` (issuer `{issuer}`), so its CRL cannot be checked"
    )]
    NoIssuer {
        /// The certificate's subject.
        subject: String,
        /// The certificate's issuer.
        issuer: String,
    },
    /// The certificate names no `http://` CRL distribution point.
    #[error("certificate `{subject}` names no http:// CRL distribution point")]
    NoDistributionPoint {
        /// The certificate's subject.
        subject: String,
    },
    /// The download failed and no earlier CRL is within its grace period.
    #[error("CRL {url} could not be fetched: {source}")]
    Fetch {
        /// The distribution point.
        url: String,
        /// What the fetcher reported.
        #[source]
        source: BoxError,
    },
    /// The download failed a moment ago and is not retried yet
    /// ([`CRL_RETRY_AFTER_FAILURE`]); no earlier CRL is within its grace period.
    #[error("CRL {url} could not be fetched ({failed_secs_ago} s ago: {last_error})")]
    RecentlyFailed {
        /// The distribution point.
        url: String,
        /// Seconds since that failure.
        failed_secs_ago: i64,
        /// The failure, as it was reported then.
        last_error: String,
    },
    /// The downloaded bytes are not an acceptable CRL of the issuing CA.
    #[error("CRL {url} is not acceptable: {problem}")]
    Invalid {
        /// The distribution point.
        url: String,
        /// What is wrong with it.
        problem: CrlProblem,
    },
    /// The newest CRL we have has passed its `nextUpdate` and the 3-day grace (or the CA
    /// serves an expired one: not renewed in time).
    #[error("CRL {url} expired at {next_update} and no newer one could be had (RzÜ AS4 §5.4: distrust after 3 days)")]
    Expired {
        /// The distribution point.
        url: String,
        /// The `nextUpdate` of the newest CRL we have.
        next_update: DateTime<Utc>,
    },
}

/// What is wrong with a downloaded CRL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrlProblem {
    /// Neither DER nor PEM.
    #[error("not a CRL in DER or PEM")]
    Unreadable,
    /// Its issuer is not the certificate's issuer.
    #[error("issued by `{found}`, expected `{expected}`")]
    WrongIssuer {
        /// The CA that issued the certificate.
        expected: String,
        /// The CRL's issuer.
        found: String,
    },
    /// The signature does not verify with the issuing CA's key.
    #[error("signature does not verify with the key of `{issuer}`")]
    BadSignature {
        /// The CA.
        issuer: String,
    },
    /// No `nextUpdate`: we could not tell when it stops being current.
    #[error("no nextUpdate")]
    NoNextUpdate,
    /// `thisUpdate`/`nextUpdate` not readable as times.
    #[error("unreadable thisUpdate/nextUpdate")]
    BadTimes,
}

/// A verified CRL with its validity period.
struct Crl {
    crl: X509Crl,
    this_update: DateTime<Utc>,
    next_update: DateTime<Utc>,
}

impl fmt::Debug for Crl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crl")
            .field("this_update", &self.this_update)
            .field("next_update", &self.next_update)
            .finish_non_exhaustive()
    }
}

/// What the cache knows about one distribution point.
#[derive(Debug, Default)]
struct Entry {
    /// The newest verified CRL.
    crl: Option<Arc<Crl>>,
    /// The last failed download, if it was after the last good one.
    failure: Option<(DateTime<Utc>, String)>,
}

/// Revocation by CRL for TLS peer certificates, with a cache per distribution point.
///
/// Shared by all connections (`Arc<CrlCache>`). Two connections needing the same missing CRL at
/// once may both download it; the result is the same.
pub struct CrlCache {
    anchors: Vec<X509>,
    fetcher: Arc<dyn CrlFetcher>,
    clock: Clock,
    entries: Mutex<HashMap<String, Entry>>,
}

impl fmt::Debug for CrlCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrlCache")
            .field("anchors", &self.anchors.len())
            .field("fetcher", &self.fetcher)
            .finish_non_exhaustive()
    }
}

impl CrlCache {
    /// A cache whose CRLs must be signed by one of `anchors` (the SM-PKI root and sub CAs, the
    /// same as the TLS trust anchors), downloaded with `fetcher`, judged at `clock()`.
    pub fn new(anchors: Vec<X509>, fetcher: Arc<dyn CrlFetcher>, clock: Clock) -> CrlCache {
        CrlCache {
            anchors,
            fetcher,
            clock,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The revocation status of `cert`, downloading its CRL when none is current.
    pub async fn status(&self, cert: &X509Ref) -> RevocationStatus {
        let Some(issuer) = self
            .anchors
            .iter()
            .find(|a| a.issued(cert) == X509VerifyResult::OK)
        else {
            return RevocationStatus::Unavailable(CrlUnavailable::NoIssuer {
                subject: name_line(cert.subject_name()),
                issuer: name_line(cert.issuer_name()),
            });
        };
        let urls = http_distribution_points(cert);
        let mut unavailable = CrlUnavailable::NoDistributionPoint {
            subject: name_line(cert.subject_name()),
        };
        for url in urls {
            match self.current_crl(&url, issuer).await {
                Ok(crl) => return judge(&crl.crl, cert),
                Err(why) => {
                    tracing::warn!(%url, error = %why, "CRL distribution point unusable");
                    unavailable = why;
                }
            }
        }
        RevocationStatus::Unavailable(unavailable)
    }

    /// The CRL to judge by for `url`: the cached one while current, else a new download, else
    /// the cached one within its grace period.
    async fn current_crl(&self, url: &str, issuer: &X509) -> Result<Arc<Crl>, CrlUnavailable> {
        let now = self.clock.now();
        let (cached, failure) = {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            match entries.get(url) {
                Some(e) => (e.crl.clone(), e.failure.clone()),
                None => (None, None),
            }
        };
        if let Some(crl) = &cached {
            if now < crl.next_update {
                return Ok(crl.clone());
            }
        }
        let fetch_error = match failure {
            Some((at, last_error)) if now - at < CRL_RETRY_AFTER_FAILURE => {
                CrlUnavailable::RecentlyFailed {
                    url: url.to_string(),
                    failed_secs_ago: (now - at).num_seconds(),
                    last_error,
                }
            }
            _ => match self.download(url, issuer).await {
                Ok(fresh) => {
                    let fresh = Arc::new(fresh);
                    let newest = match &cached {
                        Some(old) if old.this_update > fresh.this_update => old.clone(),
                        _ => fresh,
                    };
                    self.store(
                        url,
                        Entry {
                            crl: Some(newest.clone()),
                            failure: None,
                        },
                    );
                    // The CA answered, with a CRL past its nextUpdate: not renewed in time, so
                    // no grace (§5.4).
                    if now < newest.next_update {
                        return Ok(newest);
                    }
                    return Err(CrlUnavailable::Expired {
                        url: url.to_string(),
                        next_update: newest.next_update,
                    });
                }
                Err(why) => {
                    self.store(
                        url,
                        Entry {
                            crl: cached.clone(),
                            failure: Some((now, why.to_string())),
                        },
                    );
                    why
                }
            },
        };
        match cached {
            Some(crl) if now < crl.next_update + CRL_GRACE => {
                tracing::warn!(
                    %url,
                    next_update = %crl.next_update,
                    error = %fetch_error,
                    "CRL not renewable; using the last one within the 3-day grace"
                );
                Ok(crl)
            }
            Some(crl)
                if matches!(
                    fetch_error,
                    CrlUnavailable::Fetch { .. } | CrlUnavailable::RecentlyFailed { .. }
                ) =>
            {
                Err(CrlUnavailable::Expired {
                    url: url.to_string(),
                    next_update: crl.next_update,
                })
            }
            _ => Err(fetch_error),
        }
    }

    async fn download(&self, url: &str, issuer: &X509) -> Result<Crl, CrlUnavailable> {
        let bytes = self
            .fetcher
            .fetch(url)
            .await
            .map_err(|source| CrlUnavailable::Fetch {
                url: url.to_string(),
                source,
            })?;
        read_crl(&bytes, issuer).map_err(|problem| CrlUnavailable::Invalid {
            url: url.to_string(),
            problem,
        })
    }

    fn store(&self, url: &str, entry: Entry) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(url.to_string(), entry);
    }
}

/// The `http://` URIs among the certificate's CRL distribution points, in order.
pub fn http_distribution_points(cert: &X509Ref) -> Vec<String> {
    let Some(points) = cert.crl_distribution_points() else {
        return Vec::new();
    };
    points
        .iter()
        .filter_map(|p| p.distpoint())
        .filter_map(|name| name.fullname())
        .flat_map(|names| names.iter().filter_map(|n| n.uri()).map(str::to_string))
        .filter(|uri| {
            uri.get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        })
        .collect()
}

/// Reads `bytes` (DER or PEM) as a CRL of `issuer`: issuer name and signature checked,
/// `nextUpdate` required.
fn read_crl(bytes: &[u8], issuer: &X509) -> Result<Crl, CrlProblem> {
    let crl = X509Crl::from_der(bytes)
        .or_else(|_| X509Crl::from_pem(bytes))
        .map_err(|_| CrlProblem::Unreadable)?;
    let issuer_line = name_line(issuer.subject_name());
    let found = name_line(crl.issuer_name());
    // Compared as DER, not as text: the text loses the string types.
    let same_issuer = match (crl.issuer_name().to_der(), issuer.subject_name().to_der()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same_issuer {
        return Err(CrlProblem::WrongIssuer {
            expected: issuer_line,
            found,
        });
    }
    let signed = issuer
        .public_key()
        .and_then(|key| crl.verify(&key))
        .unwrap_or(false);
    if !signed {
        return Err(CrlProblem::BadSignature {
            issuer: issuer_line,
        });
    }
    let this_update = to_utc(crl.last_update()).ok_or(CrlProblem::BadTimes)?;
    let next_update = crl
        .next_update()
        .ok_or(CrlProblem::NoNextUpdate)
        .and_then(|t| to_utc(t).ok_or(CrlProblem::BadTimes))?;
    Ok(Crl {
        crl,
        this_update,
        next_update,
    })
}

/// An ASN.1 time as UTC, through its distance from the Unix epoch.
fn to_utc(time: &Asn1TimeRef) -> Option<DateTime<Utc>> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(time).ok()?;
    let secs = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    Utc.timestamp_opt(secs, 0).single()
}

/// The status of `cert` on `crl` (pure).
fn judge(crl: &X509Crl, cert: &X509Ref) -> RevocationStatus {
    // `get_by_cert` takes an owned `X509`; a cheap reference-counted copy.
    let cert = cert.to_owned();
    match crl.get_by_cert(&cert) {
        CrlStatus::Revoked(entry) => RevocationStatus::Revoked {
            serial: serial_hex(&cert),
            revoked_at: entry.revocation_date().to_string(),
        },
        // `removeFromCRL` only appears in delta CRLs: the hold was lifted.
        CrlStatus::NotRevoked | CrlStatus::RemoveFromCrl(_) => RevocationStatus::Good,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Integer;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::x509::extension::BasicConstraints;
    use openssl::x509::{X509Builder, X509CrlBuilder, X509NameBuilder, X509RevokedBuilder};

    const MP: &str = "9904292000003";
    const OTHER_MP: &str = "9903829000006";
    const URL: &str = "http://crl.test/ca.crl";
    const T0: i64 = 1_800_000_000;

    fn key() -> PKey<Private> {
        let group = EcGroup::from_curve_name(Nid::BRAINPOOL_P256R1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }

    fn name(entries: &[(&str, &str)]) -> openssl::x509::X509Name {
        let mut b = X509NameBuilder::new().unwrap();
        for (k, v) in entries {
            b.append_entry_by_text(k, v).unwrap();
        }
        b.build()
    }

    struct Ca {
        key: PKey<Private>,
        cert: X509,
    }

    fn ca(cn: &str) -> Ca {
        let key = key();
        let n = name(&[("CN", cn)]);
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&n).unwrap();
        b.set_issuer_name(&n).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(T0 - 86_400).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(T0 + 365 * 86_400).unwrap())
            .unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        Ca {
            cert: b.build(),
            key,
        }
    }

    fn leaf(ca: &Ca, subject: &[(&str, &str)], serial: u32, cdp: Option<&str>) -> X509 {
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name(subject)).unwrap();
        b.set_issuer_name(ca.cert.subject_name()).unwrap();
        b.set_pubkey(&key()).unwrap();
        let serial = Asn1Integer::from_bn(&BigNum::from_u32(serial).unwrap()).unwrap();
        b.set_serial_number(&serial).unwrap();
        b.set_not_before(&Asn1Time::from_unix(T0 - 86_400).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(T0 + 365 * 86_400).unwrap())
            .unwrap();
        if let Some(url) = cdp {
            #[allow(deprecated)] // the only way the crate offers to add a CDP from text
            let ext = openssl::x509::X509Extension::new_nid(
                None,
                None,
                Nid::CRL_DISTRIBUTION_POINTS,
                &format!("URI:{url}"),
            )
            .unwrap();
            b.append_extension(ext).unwrap();
        }
        b.sign(&ca.key, MessageDigest::sha256()).unwrap();
        b.build()
    }

    fn crl(ca: &Ca, this_update: i64, next_update: i64, revoked: &[u32]) -> Vec<u8> {
        let mut b = X509CrlBuilder::new().unwrap();
        b.set_issuer_name(ca.cert.subject_name()).unwrap();
        b.set_last_update(&Asn1Time::from_unix(this_update).unwrap())
            .unwrap();
        b.set_next_update(&Asn1Time::from_unix(next_update).unwrap())
            .unwrap();
        for serial in revoked {
            let mut r = X509RevokedBuilder::new().unwrap();
            let serial = Asn1Integer::from_bn(&BigNum::from_u32(*serial).unwrap()).unwrap();
            r.set_serial_number(&serial).unwrap();
            r.set_revocation_date(&Asn1Time::from_unix(this_update).unwrap())
                .unwrap();
            b.add_revoked(r.build()).unwrap();
        }
        // The crate's builder insists on an Authority Key Identifier and a CRL number; their
        // values do not matter here (the signature is what is checked).
        let mut aki = vec![0x30, 22, 0x80, 20];
        aki.extend_from_slice(&[0x5a; 20]);
        for (oid, der) in [("2.5.29.35", aki), ("2.5.29.20", vec![0x02, 0x01, 0x01])] {
            let oid = openssl::asn1::Asn1Object::from_str(oid).unwrap();
            let der = openssl::asn1::Asn1OctetString::new_from_bytes(&der).unwrap();
            b.append_extension(
                openssl::x509::X509Extension::new_from_der(&oid, false, &der).unwrap(),
            )
            .unwrap();
        }
        b.sign(&ca.key, MessageDigest::sha256()).unwrap();
        b.build().unwrap().to_der().unwrap()
    }

    /// Serves whatever the test put in, and counts the downloads.
    #[derive(Debug, Default)]
    struct FakeFetcher {
        answer: Mutex<Option<Vec<u8>>>,
        fetches: Mutex<u32>,
    }

    impl FakeFetcher {
        fn serve(&self, bytes: Option<Vec<u8>>) {
            *self.answer.lock().unwrap() = bytes;
        }
        fn fetches(&self) -> u32 {
            *self.fetches.lock().unwrap()
        }
    }

    impl CrlFetcher for FakeFetcher {
        fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Bytes, BoxError>> {
            *self.fetches.lock().unwrap() += 1;
            let answer = self.answer.lock().unwrap().clone();
            Box::pin(async move {
                answer
                    .map(Bytes::from)
                    .ok_or_else(|| format!("GET {url}: connection refused").into())
            })
        }
    }

    struct Setup {
        ca: Ca,
        fetcher: Arc<FakeFetcher>,
        now: Arc<Mutex<i64>>,
        cache: CrlCache,
    }

    impl Setup {
        fn new() -> Setup {
            let ca = ca("Test CA");
            let fetcher = Arc::new(FakeFetcher::default());
            let now = Arc::new(Mutex::new(T0));
            let clock_now = now.clone();
            let clock =
                Clock::from_fn(move || Utc.timestamp_opt(*clock_now.lock().unwrap(), 0).unwrap());
            let cache = CrlCache::new(vec![ca.cert.clone()], fetcher.clone(), clock);
            Setup {
                ca,
                fetcher,
                now,
                cache,
            }
        }
        fn set_now(&self, t: i64) {
            *self.now.lock().unwrap() = t;
        }
        fn peer(&self, serial: u32) -> X509 {
            leaf(
                &self.ca,
                &[("OU", MP), ("CN", "a.tls.EMT.MAK")],
                serial,
                Some(URL),
            )
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    const DAY: i64 = 86_400;

    #[test]
    fn regression_names_from_certificates_carry_no_control_characters_and_say_the_party() {
        let ca = ca("Test CA");
        let forged = leaf(
            &ca,
            &[
                ("OU", "9900000000011"),
                ("CN", "Netz EMT.MAK\nWARN forged log line"),
            ],
            7,
            None,
        );
        let line = name_line(forged.subject_name());
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert_eq!(
            party_line(&forged),
            "9900000000011 (CN=Netz EMT.MAK?WARN forged log line, OU=9900000000011)"
        );
        let plain = leaf(
            &ca,
            &[("O", "Netz GmbH"), ("CN", "edi@netz.example")],
            8,
            None,
        );
        assert_eq!(party_line(&plain), "(O=Netz GmbH, CN=edi@netz.example)");
    }

    #[test]
    fn naming_accepts_emt_mak_with_partner_ou() {
        let ca = ca("CA");
        let cert = leaf(
            &ca,
            &[("O", "Netz"), ("OU", MP), ("CN", "netz.tls.EMT.MAK")],
            7,
            None,
        );
        let id = check_sm_pki_naming(&cert, None).unwrap();
        assert_eq!(id.market_partner_id.as_str(), MP);
        assert_eq!(id.common_name, "netz.tls.EMT.MAK");
        assert_eq!(id.serial, "07");
        assert_eq!(id.subject, format!("O=Netz, OU={MP}, CN=netz.tls.EMT.MAK"));
        let expected: MarketPartnerId = MP.parse().unwrap();
        assert!(check_sm_pki_naming(&cert, Some(&expected)).is_ok());
    }

    #[test]
    fn naming_refuses_cn_without_emt_mak() {
        let ca = ca("CA");
        let cert = leaf(&ca, &[("OU", MP), ("CN", "netz.example")], 1, None);
        assert!(matches!(
            check_sm_pki_naming(&cert, None),
            Err(SmPkiError::NotEmtMak { .. })
        ));
    }

    #[test]
    fn naming_refuses_ou_that_is_no_market_partner_id() {
        let ca = ca("CA");
        // 13 digits but a wrong check digit, and text.
        for ou in ["9900357000004", "Netzbetrieb", "990429200000"] {
            let cert = leaf(&ca, &[("OU", ou), ("CN", "x.EMT.MAK")], 1, None);
            let err = check_sm_pki_naming(&cert, None).unwrap_err();
            assert!(matches!(err, SmPkiError::NoMarketPartnerId { .. }), "{ou}");
        }
    }

    #[test]
    fn naming_refuses_another_partner() {
        let ca = ca("CA");
        let cert = leaf(&ca, &[("OU", MP), ("CN", "x.EMT.MAK")], 1, None);
        let expected: MarketPartnerId = OTHER_MP.parse().unwrap();
        let err = check_sm_pki_naming(&cert, Some(&expected)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("certificate `OU={MP}, CN=x.EMT.MAK` is for market partner {MP}, expected {OTHER_MP}")
        );
    }

    #[test]
    fn reads_http_distribution_points_only() {
        let ca = ca("CA");
        let cert = leaf(&ca, &[("CN", "x")], 1, Some(URL));
        assert_eq!(http_distribution_points(&cert), vec![URL.to_string()]);
        let ldap = leaf(&ca, &[("CN", "x")], 1, Some("ldap://dir/cn=ca"));
        assert!(http_distribution_points(&ldap).is_empty());
        assert!(http_distribution_points(&leaf(&ca, &[("CN", "x")], 1, None)).is_empty());
    }

    #[test]
    fn good_and_revoked_by_the_current_crl_which_is_fetched_once() {
        let s = Setup::new();
        s.fetcher.serve(Some(crl(&s.ca, T0 - DAY, T0 + DAY, &[2])));
        assert!(matches!(
            block_on(s.cache.status(&s.peer(1))),
            RevocationStatus::Good
        ));
        let revoked = block_on(s.cache.status(&s.peer(2)));
        assert!(
            matches!(&revoked, RevocationStatus::Revoked { serial, .. } if serial == "02"),
            "{revoked:?}"
        );
        assert_eq!(s.fetcher.fetches(), 1);
    }

    #[test]
    fn a_crl_signed_by_another_key_is_refused() {
        let s = Setup::new();
        let forger = Ca {
            key: key(),
            cert: s.ca.cert.clone(),
        };
        s.fetcher.serve(Some(crl(&forger, T0 - DAY, T0 + DAY, &[])));
        let status = block_on(s.cache.status(&s.peer(1)));
        assert!(
            matches!(
                &status,
                RevocationStatus::Unavailable(CrlUnavailable::Invalid {
                    problem: CrlProblem::BadSignature { .. },
                    ..
                })
            ),
            "{status:?}"
        );
    }

    #[test]
    fn a_crl_of_another_ca_is_refused() {
        let s = Setup::new();
        let other = ca("Other CA");
        s.fetcher.serve(Some(crl(&other, T0 - DAY, T0 + DAY, &[])));
        let status = block_on(s.cache.status(&s.peer(1)));
        assert!(matches!(
            status,
            RevocationStatus::Unavailable(CrlUnavailable::Invalid {
                problem: CrlProblem::WrongIssuer { .. },
                ..
            })
        ));
    }

    #[test]
    fn unreachable_crl_is_unavailable_and_names_the_url() {
        let s = Setup::new();
        let RevocationStatus::Unavailable(why) = block_on(s.cache.status(&s.peer(1))) else {
            panic!("expected unavailable");
        };
        assert_eq!(
            why.to_string(),
            format!("CRL {URL} could not be fetched: GET {URL}: connection refused")
        );
        // Asked again at once: not downloaded again, still refused with the reason.
        let again = block_on(s.cache.status(&s.peer(1)));
        assert!(matches!(
            again,
            RevocationStatus::Unavailable(CrlUnavailable::RecentlyFailed { .. })
        ));
        assert_eq!(s.fetcher.fetches(), 1);
        s.set_now(T0 + 61);
        block_on(s.cache.status(&s.peer(1)));
        assert_eq!(s.fetcher.fetches(), 2);
    }

    #[test]
    fn last_crl_is_used_for_three_days_after_next_update_when_unobtainable() {
        let s = Setup::new();
        s.fetcher.serve(Some(crl(&s.ca, T0 - DAY, T0 + DAY, &[2])));
        assert!(matches!(
            block_on(s.cache.status(&s.peer(1))),
            RevocationStatus::Good
        ));
        s.fetcher.serve(None);
        // After nextUpdate, within the grace: the stale CRL still answers, revocations too.
        s.set_now(T0 + DAY + 2 * DAY);
        assert!(matches!(
            block_on(s.cache.status(&s.peer(1))),
            RevocationStatus::Good
        ));
        assert!(matches!(
            block_on(s.cache.status(&s.peer(2))),
            RevocationStatus::Revoked { .. }
        ));
        // Past nextUpdate + 3 days: distrust.
        s.set_now(T0 + DAY + 3 * DAY + 1);
        let status = block_on(s.cache.status(&s.peer(1)));
        assert!(
            matches!(&status, RevocationStatus::Unavailable(CrlUnavailable::Expired { url, .. }) if url == URL),
            "{status:?}"
        );
        // The CA comes back with a new CRL: trusted again.
        s.set_now(T0 + 5 * DAY);
        s.fetcher
            .serve(Some(crl(&s.ca, T0 + 5 * DAY - 10, T0 + 6 * DAY, &[])));
        assert!(matches!(
            block_on(s.cache.status(&s.peer(1))),
            RevocationStatus::Good
        ));
    }

    #[test]
    fn a_crl_served_after_its_next_update_gets_no_grace() {
        let s = Setup::new();
        s.fetcher
            .serve(Some(crl(&s.ca, T0 - 2 * DAY, T0 - DAY, &[])));
        let status = block_on(s.cache.status(&s.peer(1)));
        assert!(matches!(
            status,
            RevocationStatus::Unavailable(CrlUnavailable::Expired { .. })
        ));
    }

    #[test]
    fn a_certificate_of_an_unknown_ca_has_no_crl() {
        let s = Setup::new();
        let other = ca("Other CA");
        let cert = leaf(&other, &[("CN", "x")], 1, Some(URL));
        assert!(matches!(
            block_on(s.cache.status(&cert)),
            RevocationStatus::Unavailable(CrlUnavailable::NoIssuer { .. })
        ));
        let no_cdp = leaf(&s.ca, &[("CN", "x")], 1, None);
        assert!(matches!(
            block_on(s.cache.status(&no_cdp)),
            RevocationStatus::Unavailable(CrlUnavailable::NoDistributionPoint { .. })
        ));
    }
}
