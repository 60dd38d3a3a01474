//! `[as4]` (our AS4 identity and endpoint) and the AS4 settings of a partner.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::{Table, Value};

use super::error::Problem;
use super::reader::{join, render_value, Reader};
use super::values::{parse_https_url, parse_path, parse_socket_addr};
use super::{Transport, MIN_INTERVAL};

/// `[as4]`: what the AS4 transport needs of us (BDEW AS4 profile; `transport::as4`). Only
/// paths here: keys and certificates are read and checked (SM-PKI naming, key matches
/// certificate) when `serve` starts, by `daemon::as4::As4Runtime::load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct As4Config {
    /// `as4.listen`: the address of our HTTPS receiver; `None`: we only send.
    pub listen: Option<SocketAddr>,
    /// `as4.path`: the path partners POST to (default `/as4`).
    pub path: String,
    /// `as4.signing_key` / `as4.signing_cert`: the WS-Security signature key pair
    /// (brainpoolP256r1; separate pairs for signing, encryption and TLS, BDEW AS4-Profil
    /// §2.3.4.4 as quoted by asx-rs).
    pub signing_key: PathBuf,
    /// See `signing_key`.
    pub signing_cert: PathBuf,
    /// `as4.encryption_key` / `as4.encryption_cert`: what partners encrypt to.
    pub encryption_key: PathBuf,
    /// See `encryption_key`.
    pub encryption_cert: PathBuf,
    /// `as4.tls_key` / `as4.tls_cert`: TLS server and client identity.
    pub tls_key: PathBuf,
    /// See `tls_key`.
    pub tls_cert: PathBuf,
    /// `as4.trust_anchors`: PEM files of the SM-PKI root and sub-CA certificates partners'
    /// certificates must chain to.
    pub trust_anchors: Vec<PathBuf>,
    /// `as4.crl_signer`: the certificate that signs the SM-PKI root's indirect CRL, if any.
    pub crl_signer: Option<PathBuf>,
    /// `as4.max_message_bytes`: the largest AS4 request we read (default 64 MiB).
    pub max_message_bytes: u64,
    /// `as4.max_payload_bytes`: the largest interchange we accept after decompression
    /// (default 32 MiB): a gzip bomb ends here.
    pub max_payload_bytes: u64,
    /// `as4.dedup_retention`: how long received message ids are remembered (at least 7 days,
    /// default 10 days).
    pub dedup_retention: Duration,
    /// `as4.connect_timeout` (default 5 s) and `as4.response_timeout` (default 100 s): the
    /// values of phase4's BDEW client (transport.md §1.8).
    pub connect_timeout: Duration,
    /// See `connect_timeout`.
    pub response_timeout: Duration,
}

/// The AS4 settings of one partner (`transport = "as4"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerAs4 {
    /// `as4_url`: the partner's AS4 endpoint (`https://` only, BDEW); `None` for a partner
    /// that only sends to us (what is for it is parked, naming it).
    pub url: Option<String>,
    /// `signing_cert`: PEM file of the certificate the partner signs with.
    pub signing_cert: PathBuf,
    /// `encryption_cert`: PEM file of the certificate we encrypt to.
    pub encryption_cert: PathBuf,
}

impl Reader<'_> {
    /// `as4_url`, `signing_cert` and `encryption_cert` of a partner: the certificates are
    /// required with `transport = "as4"`, the URL is optional (a partner that only sends to
    /// us has no endpoint of its own for us); `as4_url` is refused with any other transport.
    pub(super) fn partner_as4(
        &mut self,
        t: &mut Table,
        prefix: &str,
        transport: Option<Transport>,
    ) -> Option<PartnerAs4> {
        if transport != Some(Transport::As4) {
            if let Some(value) = t.remove("as4_url") {
                if transport.is_some() {
                    self.push(
                        join(prefix, "as4_url"),
                        Some(render_value(&value)),
                        Problem::Invalid {
                            reason: "only used with transport = \"as4\"".into(),
                        },
                    );
                }
            }
            return None;
        }
        let url = self.checked(t, prefix, "as4_url", parse_https_url);
        let signing_cert = self.checked(t, prefix, "signing_cert", parse_path);
        let encryption_cert = self.checked(t, prefix, "encryption_cert", parse_path);
        let signing_cert = self.require(
            signing_cert,
            join(prefix, "signing_cert"),
            "transport = \"as4\" needs the PEM file of the certificate the partner signs with",
        );
        let encryption_cert = self.require(
            encryption_cert,
            join(prefix, "encryption_cert"),
            "transport = \"as4\" needs the PEM file of the certificate we encrypt to",
        );
        Some(PartnerAs4 {
            url,
            signing_cert: signing_cert?,
            encryption_cert: encryption_cert?,
        })
    }

    /// `[as4]`.
    pub(super) fn as4(&mut self, root: &mut Table) -> Option<As4Config> {
        if !root.contains_key("as4") {
            return None;
        }
        let mut t = self.table(root, "", "as4");
        let p = "as4";
        let listen = self.checked(&mut t, p, "listen", parse_socket_addr);
        let path = self
            .checked(&mut t, p, "path", |s| {
                if s.starts_with('/') && !s.contains(char::is_whitespace) {
                    Ok(s.to_string())
                } else {
                    Err("must be a path starting with /".to_string())
                }
            })
            .unwrap_or_else(|| "/as4".to_string());
        let file = |r: &mut Reader<'_>, t: &mut Table, key: &str, what: &'static str| {
            let v = r.checked(t, p, key, parse_path);
            r.require(v, format!("as4.{key}"), what)
        };
        let signing_key = file(
            self,
            &mut t,
            "signing_key",
            "[as4] names the PEM file of the key we sign with",
        );
        let signing_cert = file(
            self,
            &mut t,
            "signing_cert",
            "[as4] names the PEM file of our signing certificate",
        );
        let encryption_key = file(
            self,
            &mut t,
            "encryption_key",
            "[as4] names the PEM file of the key partners encrypt to",
        );
        let encryption_cert = file(
            self,
            &mut t,
            "encryption_cert",
            "[as4] names the PEM file of our encryption certificate",
        );
        let tls_key = file(
            self,
            &mut t,
            "tls_key",
            "[as4] names the PEM file of our TLS key",
        );
        let tls_cert = file(
            self,
            &mut t,
            "tls_cert",
            "[as4] names the PEM file of our TLS certificate",
        );
        let trust_anchors = match t.remove("trust_anchors") {
            Some(Value::Array(items)) if !items.is_empty() => {
                let mut out = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(s) => match parse_path(&s) {
                            Ok(path) => out.push(path),
                            Err(reason) => self.push(
                                format!("as4.trust_anchors[{i}]"),
                                Some(format!("{s:?}")),
                                Problem::Invalid { reason },
                            ),
                        },
                        other => {
                            self.wrong_type(format!("as4.trust_anchors[{i}]"), &other, "a string")
                        }
                    }
                }
                Some(out)
            }
            Some(other @ Value::Array(_)) | Some(other) => {
                self.wrong_type(
                    "as4.trust_anchors".into(),
                    &other,
                    "a non-empty array of PEM file paths",
                );
                None
            }
            None => {
                self.push(
                    "as4.trust_anchors".into(),
                    None,
                    Problem::Missing {
                        reason: "[as4] names the SM-PKI CA certificates partners' certificates chain to",
                    },
                );
                None
            }
        };
        let crl_signer = self.checked(&mut t, p, "crl_signer", parse_path);
        let mib = 1024 * 1024;
        let max_message_bytes = self
            .integer(&mut t, p, "max_message_bytes", 64 * 1024_i64, 256 * mib)
            .unwrap_or(64 * mib) as u64;
        let max_payload_bytes = self
            .integer(&mut t, p, "max_payload_bytes", 64 * 1024_i64, 128 * mib)
            .unwrap_or(32 * mib) as u64;
        let day = Duration::from_secs(86_400);
        let dedup_retention = self
            .duration(&mut t, p, "dedup_retention", 7 * day, 365 * day)
            .unwrap_or(10 * day);
        let connect_timeout = self
            .duration(
                &mut t,
                p,
                "connect_timeout",
                MIN_INTERVAL,
                Duration::from_secs(600),
            )
            .unwrap_or(Duration::from_secs(5));
        let response_timeout = self
            .duration(
                &mut t,
                p,
                "response_timeout",
                MIN_INTERVAL,
                Duration::from_secs(3600),
            )
            .unwrap_or(Duration::from_secs(100));
        self.unknown_keys(
            t,
            p,
            &[
                "listen",
                "path",
                "signing_key",
                "signing_cert",
                "encryption_key",
                "encryption_cert",
                "tls_key",
                "tls_cert",
                "trust_anchors",
                "crl_signer",
                "max_message_bytes",
                "max_payload_bytes",
                "dedup_retention",
                "connect_timeout",
                "response_timeout",
            ],
        );
        Some(As4Config {
            listen,
            path,
            signing_key: signing_key?,
            signing_cert: signing_cert?,
            encryption_key: encryption_key?,
            encryption_cert: encryption_cert?,
            tls_key: tls_key?,
            tls_cert: tls_cert?,
            trust_anchors: trust_anchors?,
            crl_signer,
            max_message_bytes,
            max_payload_bytes,
            dedup_retention,
            connect_timeout,
            response_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::load;

    #[test]
    fn as4_partners_need_the_as4_section_their_endpoint_and_certificates() {
        let errs = load(
            "[[partners]]\nid = \"9904292000003\"\ntransport = \"as4\"\n\
             as4_url = \"http://vnb.example/as4\"\n\
             [[partners]]\nid = \"9900269000000\"\ntransport = \"ftp\"\n\
             [[partners]]\nid = \"9903829000006\"\nas4_url = \"https://x.example/as4\"\n",
        )
        .unwrap_err();
        let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "partners[0].as4_url = \"http://vnb.example/as4\": must be an https:// URL \
                 (the BDEW AS4 profile allows no plain HTTP)",
                "partners[0].signing_cert: missing: transport = \"as4\" needs the PEM file of \
                 the certificate the partner signs with",
                "partners[0].encryption_cert: missing: transport = \"as4\" needs the PEM file \
                 of the certificate we encrypt to",
                "partners[1].transport = \"ftp\": must be \"file\", \"email\" or \"as4\"",
                "partners[2].as4_url = \"https://x.example/as4\": only used with transport = \"as4\"",
                "as4: missing: a partner uses transport = \"as4\", so [as4] says who we are \
                 (keys, certificates, SM-PKI trust anchors)",
            ]
        );
    }

    #[test]
    fn as4_section_reads_paths_defaults_and_limits() {
        let c = load(
            "[as4]\nlisten = \"127.0.0.1:8443\"\nsigning_key = \"s.key\"\n\
             signing_cert = \"s.pem\"\nencryption_key = \"e.key\"\nencryption_cert = \"e.pem\"\n\
             tls_key = \"t.key\"\ntls_cert = \"t.pem\"\ntrust_anchors = [\"ca.pem\"]\n\
             [[partners]]\nid = \"9904292000003\"\ntransport = \"as4\"\n\
             as4_url = \"https://vnb.example/as4\"\nsigning_cert = \"vnb-s.pem\"\n\
             encryption_cert = \"vnb-e.pem\"\n",
        )
        .unwrap();
        let as4 = c.as4.as_ref().unwrap();
        assert_eq!(as4.listen, Some("127.0.0.1:8443".parse().unwrap()));
        assert_eq!(as4.path, "/as4");
        assert_eq!(as4.trust_anchors, [PathBuf::from("ca.pem")]);
        assert_eq!(as4.dedup_retention, Duration::from_secs(10 * 86_400));
        assert_eq!(as4.max_payload_bytes, 32 * 1024 * 1024);
        assert_eq!(as4.connect_timeout, Duration::from_secs(5));
        let partner = c.partners[0].as4.as_ref().unwrap();
        assert_eq!(partner.url.as_deref(), Some("https://vnb.example/as4"));
        assert_eq!(c.partners[0].transport, Transport::As4);

        let errs =
            load("[as4]\ndedup_retention = \"3d\"\nmax_payload_bytes = 1\ntrust_anchors = []\n")
                .unwrap_err();
        let keys: Vec<String> = errs.iter().map(|e| e.key.to_string()).collect();
        for key in [
            "as4.signing_key",
            "as4.trust_anchors",
            "as4.max_payload_bytes",
            "as4.dedup_retention",
        ] {
            assert!(keys.contains(&key.to_string()), "{key} not in {keys:?}");
        }
    }
}
