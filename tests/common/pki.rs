//! A throw-away test PKI made with the `openssl` CLI in a temporary directory: one
//! brainpoolP256r1 CA and end-entity certificates (brainpoolP256r1 or RSA) named as the SM-PKI
//! names them (subject OU = market partner ID, CN containing `EMT.MAK`). Nothing of it is
//! committed: every test run makes new keys.
//!
//! For AS4 also SM-PKI certificates per role (signing, encryption, TLS: separate key pairs),
//! with a CRL distribution point, and CRLs signed by the CA (`openssl ca -gencrl`).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The kind of key pair of a certificate.
#[derive(Debug, Clone, Copy)]
pub enum KeyKind {
    /// EC on brainpoolP256r1 (SM-PKI).
    Brainpool,
    /// RSA with this many bits.
    Rsa(u32),
}

/// The CA and its directory.
#[derive(Debug)]
pub struct Pki {
    dir: tempfile::TempDir,
    // The AS4 parts are unused in the S/MIME and e-mail test binaries.
    #[allow(dead_code)]
    /// Written into the CRL distribution point of the SM-PKI certificates issued from now on.
    crl_url: Option<String>,
    /// Numbers the CRL databases, one per [`Pki::crl`].
    #[allow(dead_code)]
    crls: AtomicUsize,
}

/// What an SM-PKI certificate is for; each role has its own key pair.
#[allow(dead_code)] // unused in the S/MIME and e-mail test binaries
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmPkiRole {
    /// Signing (WS-Security, S/MIME).
    Signing,
    /// Encryption (key agreement).
    Encryption,
    /// TLS client and server authentication.
    Tls,
}

#[allow(dead_code)]
impl SmPkiRole {
    fn label(self) -> &'static str {
        match self {
            SmPkiRole::Signing => "sig",
            SmPkiRole::Encryption => "enc",
            SmPkiRole::Tls => "tls",
        }
    }

    fn extensions(self) -> &'static str {
        match self {
            SmPkiRole::Signing => "keyUsage=critical,digitalSignature,nonRepudiation\n",
            SmPkiRole::Encryption => "keyUsage=critical,keyAgreement\n",
            SmPkiRole::Tls => {
                "keyUsage=critical,digitalSignature,keyAgreement\n\
                 extendedKeyUsage=serverAuth,clientAuth\n"
            }
        }
    }
}

/// An end-entity key pair with its certificate, as files.
#[derive(Debug, Clone)]
pub struct Party {
    pub key: PathBuf,
    pub cert: PathBuf,
}

impl Pki {
    /// A new CA on brainpoolP256r1, in a new directory under Cargo's temporary directory for
    /// integration tests (inside `target/`, so a PKI kept in a `static` leaves nothing behind
    /// outside the build directory); examples (the campaigns), for which Cargo sets no such
    /// directory, use the system's temporary directory.
    pub fn new() -> Pki {
        let dir = match option_env!("CARGO_TARGET_TMPDIR") {
            Some(target) => tempfile::tempdir_in(target),
            None => tempfile::tempdir(),
        };
        let pki = Pki {
            dir: dir.expect("tempdir"),
            crl_url: None,
            crls: AtomicUsize::new(0),
        };
        pki.genkey("ca.key", KeyKind::Brainpool);
        pki.openssl(&[
            "req",
            "-new",
            "-x509",
            "-key",
            "ca.key",
            "-subj",
            "/C=DE/O=Test SM-PKI/CN=Test EMT CA",
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-addext",
            "subjectKeyIdentifier=hash",
            "-out",
            "ca.pem",
        ]);
        pki
    }

    /// A key pair and a certificate issued by the CA for `subject` (an openssl `-subj` string).
    pub fn issue(&self, name: &str, kind: KeyKind, subject: &str) -> Party {
        let usage = match kind {
            KeyKind::Brainpool => "digitalSignature,keyAgreement",
            KeyKind::Rsa(_) => "digitalSignature,keyEncipherment",
        };
        let extensions = format!(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,{usage}\n\
             extendedKeyUsage=emailProtection\nsubjectKeyIdentifier=hash\n\
             authorityKeyIdentifier=keyid\n"
        );
        self.issue_with_extensions(name, kind, subject, &extensions)
    }

    /// A key pair and a certificate issued by the CA with the given extension file text.
    fn issue_with_extensions(
        &self,
        name: &str,
        kind: KeyKind,
        subject: &str,
        extensions: &str,
    ) -> Party {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let cert = format!("{name}.pem");
        let ext = format!("{name}.ext");
        self.genkey(&key, kind);
        std::fs::write(self.path(&ext), extensions).expect("write extension file");
        self.openssl(&["req", "-new", "-key", &key, "-subj", subject, "-out", &csr]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ]);
        Party {
            key: self.path(&key),
            cert: self.path(&cert),
        }
    }

    fn genkey(&self, file: &str, kind: KeyKind) {
        match kind {
            KeyKind::Brainpool => self.openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:brainpoolP256r1",
                "-out",
                file,
            ]),
            KeyKind::Rsa(bits) => self.openssl(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                &format!("rsa_keygen_bits:{bits}"),
                "-out",
                file,
            ]),
        };
    }

    /// Runs `openssl ARGS` in the directory and returns its output; panics when it fails.
    pub fn openssl(&self, args: &[&str]) -> Output {
        let out = self.try_openssl(args);
        assert!(
            out.status.success(),
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs `openssl ARGS` in the directory and returns its output, failed or not.
    pub fn try_openssl(&self, args: &[&str]) -> Output {
        Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("the openssl CLI runs")
    }
}

/// The AS4 parts: SM-PKI certificates per role and CRLs (unused in the S/MIME and e-mail test
/// binaries).
#[allow(dead_code)]
impl Pki {
    /// The CRL distribution point (`http://…`) of the SM-PKI certificates issued from now on.
    pub fn set_crl_url(&mut self, url: &str) {
        self.crl_url = Some(url.to_string());
    }

    /// An SM-PKI certificate on brainpoolP256r1 with its own key pair:
    /// `CN=<name>.<role>.EMT.MAK`, `OU=<mp_id>`, the CRL distribution point set with
    /// [`Pki::set_crl_url`], SKI/AKI; TLS certificates for `serverAuth,clientAuth`.
    pub fn issue_sm_pki(&self, name: &str, mp_id: &str, role: SmPkiRole) -> Party {
        let subject = format!(
            "/C=DE/O={name}/OU={mp_id}/CN={name}.{}.EMT.MAK",
            role.label()
        );
        let crl_url = self.crl_url.clone();
        self.issue_sm_pki_with(
            &format!("{name}-{}", role.label()),
            &subject,
            role,
            crl_url.as_deref(),
        )
    }

    /// Like [`Pki::issue_sm_pki`] with any subject (an openssl `-subj` string) and CRL
    /// distribution point (none with `None`): for certificates named wrongly on purpose.
    pub fn issue_sm_pki_with(
        &self,
        file: &str,
        subject: &str,
        role: SmPkiRole,
        crl_url: Option<&str>,
    ) -> Party {
        let cdp = crl_url
            .map(|url| format!("crlDistributionPoints=URI:{url}\n"))
            .unwrap_or_default();
        let extensions = format!(
            "basicConstraints=CA:FALSE\n{}subjectKeyIdentifier=hash\n\
             authorityKeyIdentifier=keyid\n{cdp}",
            role.extensions()
        );
        self.issue_with_extensions(file, KeyKind::Brainpool, subject, &extensions)
    }

    /// A CRL signed by the CA that lists `revoked`, valid for 7 days; returns the DER file
    /// (the PEM one is beside it, `.pem` instead of `.der`).
    pub fn crl(&self, revoked: &[&Party]) -> PathBuf {
        self.crl_valid_for(revoked, 7)
    }

    /// A CRL as [`Pki::crl`] makes it, valid for `days` days.
    pub fn crl_valid_for(&self, revoked: &[&Party], days: u32) -> PathBuf {
        let n = self.crls.fetch_add(1, Ordering::SeqCst);
        let config = format!("crl-{n}.cnf");
        std::fs::write(self.path(&format!("crl-{n}.index")), "").expect("write CRL index");
        std::fs::write(self.path(&format!("crl-{n}.number")), "01\n").expect("write CRL number");
        std::fs::write(
            self.path(&config),
            format!(
                "[ca]\ndefault_ca = test_ca\n\
                 [test_ca]\ndatabase = crl-{n}.index\ncrlnumber = crl-{n}.number\n\
                 certificate = ca.pem\nprivate_key = ca.key\ndefault_md = sha256\n\
                 default_crl_days = {days}\n"
            ),
        )
        .expect("write CRL config");
        for party in revoked {
            let cert = party.cert.to_str().expect("UTF-8 path");
            self.openssl(&["ca", "-config", &config, "-revoke", cert]);
        }
        let pem = format!("crl-{n}.pem");
        let der = format!("crl-{n}.der");
        self.openssl(&["ca", "-config", &config, "-gencrl", "-out", &pem]);
        self.openssl(&["crl", "-in", &pem, "-outform", "DER", "-out", &der]);
        self.path(&der)
    }

    /// The path of a file in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }
}

/// A minimal HTTP/1.0 file server in a thread (the CRL distribution point); 404 for unknown
/// paths. Returns `http://127.0.0.1:<port>`.
#[allow(dead_code)]
pub fn serve_files(
    files: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>,
) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind CRL server");
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            let body = files.lock().unwrap().get(&path).cloned();
            let _ = match body {
                Some(body) => stream
                    .write_all(
                        format!(
                            "HTTP/1.0 200 OK\r\nContent-Type: application/pkix-crl\r\n\
                             Content-Length: {}\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| stream.write_all(&body)),
                None => stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            };
        }
    });
    base
}
