//! Transport security of the mail servers, the I/O part: the CA file read as a client would
//! (the settings themselves are configuration: [`crate::config::TlsSettings`]).

use std::path::Path;

use crate::config::{TlsSettings, TlsSetupError};

impl TlsSettings {
    /// Reads [`Self::ca_file`] (when set) as a client would: an error when it cannot be read
    /// or holds no PEM certificate.
    pub fn check_ca_file(&self) -> Result<(), TlsSetupError> {
        self.ca_certificates().map(drop)
    }

    /// The CA certificates of [`Self::ca_file`], as DER, or none when it is unset.
    pub(super) fn ca_certificates(&self) -> Result<Vec<Vec<u8>>, TlsSetupError> {
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        read_ca_file(path)
    }
}

/// Every certificate of a PEM file, as DER; an error when there is none.
fn read_ca_file(path: &Path) -> Result<Vec<Vec<u8>>, TlsSetupError> {
    let error = |reason: String| TlsSetupError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let certs = openssl::x509::X509::stack_from_pem(&pem)
        .map_err(|e| error(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(error("no PEM certificate in it".into()));
    }
    certs
        .iter()
        .map(|c| c.to_der().map_err(|e| error(e.to_string())))
        .collect()
}

/// An error with its sources, `: `-joined (OpenSSL's verify reason sits in a source).
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsMode;

    #[test]
    fn a_ca_file_must_hold_pem_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsSettings::with_ca(TlsMode::StartTls, dir.path().join("nope.pem"));
        assert!(matches!(
            missing.check_ca_file(),
            Err(TlsSetupError::CaFile { .. })
        ));
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let error = TlsSettings::with_ca(TlsMode::StartTls, &garbage)
            .check_ca_file()
            .unwrap_err();
        assert!(error.to_string().contains("garbage.pem"), "{error}");
        // Two certificates in one file (a bundle) are both read.
        let key = openssl::pkey::PKey::from_ec_key(
            openssl::ec::EcKey::generate(
                &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let mut builder = openssl::x509::X509::builder().unwrap();
        builder.set_pubkey(&key).unwrap();
        let now = openssl::asn1::Asn1Time::days_from_now(0).unwrap();
        let later = openssl::asn1::Asn1Time::days_from_now(1).unwrap();
        builder.set_not_before(&now).unwrap();
        builder.set_not_after(&later).unwrap();
        builder
            .sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        let pem = builder.build().to_pem().unwrap();
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(&bundle, [pem.clone(), pem].concat()).unwrap();
        let settings = TlsSettings::with_ca(TlsMode::Implicit, &bundle);
        assert_eq!(settings.ca_certificates().unwrap().len(), 2);
    }
}
