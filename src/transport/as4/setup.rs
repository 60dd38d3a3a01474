//! The AS4 transport's set-up: our keys and the AS4 partners from the configuration, read and
//! checked with the rest of it before the store is touched ([`As4Runtime::load`]), and the
//! runtime `serve` runs (the endpoint, the HTTPS acceptor, the CRL cache of TLS peers).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::https::{HttpsAcceptor, HttpsClient, PlainHttpFetcher, TlsSettings};
use super::persist::EvidenceStore;
use super::size_guard::DecryptionKey;
use super::{certificate, key_pair, As4Endpoint, As4Keys, As4Partner, As4Settings, HttpClient};
use crate::clock::Clock;
use crate::config::{
    As4Config, Config, ConfigError, ConfigKey, Problem, Transport as PartnerTransport,
};
use crate::ids::MarketPartnerId;
use crate::store::Store;
use crate::transport::smpki::CrlCache;

/// How long one delivery may hold a received message's id (journaling one interchange takes
/// milliseconds; a crashed holder's claim is taken over after this).
pub const DEDUP_LEASE: Duration = Duration::from_secs(60);

fn invalid(key: &str, value: Option<String>, reason: String) -> ConfigError {
    ConfigError {
        key: ConfigKey::File(key.to_string()),
        value,
        problem: Problem::Invalid { reason },
    }
}

/// The partner registry's AS4 part and our identity, read from the configured files.
#[derive(Debug)]
pub struct As4Material {
    /// `[as4]`.
    pub config: As4Config,
    /// The AS4 partners with their certificates.
    pub partners: Vec<As4Partner>,
    /// Our key pairs and the trust anchors.
    pub keys: As4Keys,
}

/// Reads `[as4]` and the AS4 partners' certificates. `Ok(None)` without `[as4]`. Every error
/// at once, keyed like [`Config::load`]'s.
pub fn load_material(config: &Config) -> Result<Option<As4Material>, Vec<ConfigError>> {
    let Some(as4) = &config.as4 else {
        return Ok(None);
    };
    let mut errors = Vec::new();
    let pair =
        |errors: &mut Vec<ConfigError>, key: &str, cert: &std::path::Path, k: &std::path::Path| {
            match key_pair(cert, k) {
                Ok(p) => Some(p),
                Err(e) => {
                    errors.push(invalid(
                        key,
                        Some(format!("{:?}", k.display().to_string())),
                        e.to_string(),
                    ));
                    None
                }
            }
        };
    let signing = pair(
        &mut errors,
        "as4.signing_key",
        &as4.signing_cert,
        &as4.signing_key,
    );
    let encryption = pair(
        &mut errors,
        "as4.encryption_key",
        &as4.encryption_cert,
        &as4.encryption_key,
    );
    // The same key for the gzip-bomb guard (size_guard), which reads requests before asx-rs.
    let decryption = match std::fs::read(&as4.encryption_key) {
        Ok(pem) => DecryptionKey::from_pem(&pem),
        Err(_) => None,
    };
    if encryption.is_some() && decryption.is_none() {
        errors.push(invalid(
            "as4.encryption_key",
            Some(format!("{:?}", as4.encryption_key.display().to_string())),
            "not an EC private key (the BDEW profile encrypts to brainpoolP256r1)".into(),
        ));
    }
    // Our own certificates must name us as the SM-PKI does (CN with EMT.MAK, OU = our ID):
    // partners check exactly that (transport.md §1.7).
    for (key, path) in [
        ("as4.signing_cert", &as4.signing_cert),
        ("as4.encryption_cert", &as4.encryption_cert),
        ("as4.tls_cert", &as4.tls_cert),
    ] {
        if let Err(reason) = check_own_certificate(path, &config.own_id) {
            errors.push(invalid(
                key,
                Some(format!("{:?}", path.display().to_string())),
                reason,
            ));
        }
    }
    let mut anchors = Vec::new();
    for (i, path) in as4.trust_anchors.iter().enumerate() {
        match certificate(path) {
            Ok(c) => anchors.push(c),
            Err(e) => errors.push(invalid(
                &format!("as4.trust_anchors[{i}]"),
                Some(format!("{:?}", path.display().to_string())),
                e.to_string(),
            )),
        }
    }
    let crl_signer = match &as4.crl_signer {
        Some(path) => match certificate(path) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(invalid(
                    "as4.crl_signer",
                    Some(format!("{:?}", path.display().to_string())),
                    e.to_string(),
                ));
                None
            }
        },
        None => None,
    };
    let mut partners = Vec::new();
    for (i, p) in config.partners.iter().enumerate() {
        if p.transport != PartnerTransport::As4 {
            continue;
        }
        let Some(settings) = &p.as4 else { continue };
        let mut cert = |key: &str, path: &std::path::Path| match certificate(path) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(invalid(
                    &format!("partners[{i}].{key}"),
                    Some(format!("{:?}", path.display().to_string())),
                    e.to_string(),
                ));
                None
            }
        };
        let signing_cert = cert("signing_cert", &settings.signing_cert);
        let encryption_cert = cert("encryption_cert", &settings.encryption_cert);
        if let (Some(signing_cert), Some(encryption_cert)) = (signing_cert, encryption_cert) {
            partners.push(As4Partner {
                id: p.id.clone(),
                url: settings.url.clone(),
                signing_cert,
                encryption_cert,
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Some(As4Material {
        config: as4.clone(),
        partners,
        keys: As4Keys {
            signing: signing.expect("no errors"),
            encryption: encryption.expect("no errors"),
            decryption: decryption.expect("no errors"),
            anchors,
            crl_signer,
        },
    }))
}

fn check_own_certificate(path: &std::path::Path, own: &MarketPartnerId) -> Result<(), String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let cert = openssl::x509::X509::from_pem(&pem).map_err(|e| e.to_string())?;
    let name = cert.subject_name();
    let cn = name
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .filter_map(|e| e.data().to_string().ok())
        .next()
        .unwrap_or_default();
    let ous: Vec<String> = name
        .entries_by_nid(openssl::nid::Nid::ORGANIZATIONALUNITNAME)
        .filter_map(|e| e.data().to_string().ok())
        .collect();
    if !cn.contains("EMT.MAK") {
        return Err(format!(
            "not an SM-PKI certificate for market communication: CN {cn:?} does not contain EMT.MAK"
        ));
    }
    if !ous.iter().any(|ou| ou.trim() == own.as_str()) {
        return Err(format!(
            "the certificate's OU {ous:?} is not our market partner ID {own}"
        ));
    }
    Ok(())
}

/// Builds the endpoint from the material, with `http` as the HTTPS client and `evidence`
/// keeping the evidence.
pub fn endpoint<H: HttpClient>(
    config: &Config,
    material: &As4Material,
    http: H,
    evidence: EvidenceStore,
) -> Result<As4Endpoint, ConfigError> {
    let keys = &material.keys;
    As4Endpoint::build(As4Settings {
        own_id: config.own_id.clone(),
        signing: keys.signing.clone(),
        encryption: keys.encryption.clone(),
        anchors: keys.anchors.clone(),
        crl_signer: keys.crl_signer.clone(),
        partners: material.partners.clone(),
        http,
        audit: evidence,
        max_message_bytes: material.config.max_message_bytes,
        max_payload_bytes: material.config.max_payload_bytes,
    })
    .map_err(|e| invalid("as4", None, e.to_string()))
}

/// The AS4 transport as `serve` runs it: the endpoint (sending and the asx-rs side of
/// receiving), the HTTPS acceptor and the CRL cache of TLS peers, and `[as4]`.
#[derive(Debug, Clone)]
pub struct As4Runtime {
    /// Sends to and receives from the AS4 partners.
    pub endpoint: As4Endpoint,
    /// `[as4]`.
    pub config: As4Config,
    pub(super) acceptor: Arc<HttpsAcceptor>,
    pub(super) crl: Arc<CrlCache>,
    /// Our decryption key, for the receiver's gzip-bomb guard.
    pub(super) decryption: DecryptionKey,
    evidence: EvidenceStore,
    pub(super) clock: Clock,
}

/// `host:port` (port written out, 443 by default) of an `https://` URL.
fn authority(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?;
    Some(format!("{host}:{}", uri.port_u16().unwrap_or(443)))
}

impl As4Runtime {
    /// Reads `[as4]` and the AS4 partners and builds everything, before the store is
    /// connected (the evidence store is attached with [`As4Runtime::attach`]); `Ok(None)`
    /// without `[as4]`. Every error at once, keyed like [`Config::load`]'s.
    pub fn load(config: &Config, clock: Clock) -> Result<Option<As4Runtime>, Vec<ConfigError>> {
        let Some(material) = load_material(config)? else {
            return Ok(None);
        };
        let as4 = &material.config;
        let mut anchors_pem = Vec::new();
        for path in &as4.trust_anchors {
            anchors_pem.extend(std::fs::read(path).unwrap_or_default());
            anchors_pem.push(b'\n');
        }
        let read = |p: &std::path::Path| std::fs::read(p).unwrap_or_default();
        let tls = TlsSettings::from_pem(&read(&as4.tls_key), &read(&as4.tls_cert), &anchors_pem)
            .map_err(|e| {
                vec![invalid(
                    "as4.tls_key",
                    Some(format!("{:?}", as4.tls_key.display().to_string())),
                    e.to_string(),
                )]
            })?;
        let crl = Arc::new(CrlCache::new(
            tls.anchors().to_vec(),
            Arc::new(PlainHttpFetcher::default()),
            clock.clone(),
        ));
        let expected: HashMap<String, MarketPartnerId> = material
            .partners
            .iter()
            .filter_map(|p| Some((authority(p.url.as_deref()?)?, p.id.clone())))
            .collect();
        let client = HttpsClient::new(&tls, crl.clone(), expected)
            .map_err(|e| vec![invalid("as4.tls_cert", None, e.to_string())])?
            .with_timeouts(as4.connect_timeout, as4.response_timeout);
        let acceptor = tls
            .acceptor()
            .map_err(|e| vec![invalid("as4.tls_cert", None, e.to_string())])?;
        let evidence = EvidenceStore::unattached(clock.clone());
        let endpoint =
            endpoint(config, &material, client, evidence.clone()).map_err(|e| vec![e])?;
        Ok(Some(As4Runtime {
            endpoint,
            config: as4.clone(),
            acceptor: Arc::new(acceptor),
            crl,
            decryption: material.keys.decryption.clone(),
            evidence,
            clock,
        }))
    }

    /// Gives the runtime its store: the evidence of every exchange is kept there.
    pub fn attach(&self, store: &Store) {
        self.evidence.attach(store.clone());
    }
}
