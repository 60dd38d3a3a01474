//! A throw-away test PKI made with the `openssl` CLI in a temporary directory: one
//! brainpoolP256r1 CA and end-entity certificates (brainpoolP256r1 or RSA) named as the SM-PKI
//! names them (subject OU = market partner ID, CN containing `EMT.MAK`). Nothing of it is
//! committed: every test run makes new keys.

use std::path::PathBuf;
use std::process::{Command, Output};

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
    /// outside the build directory).
    pub fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir"),
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
            "-out",
            "ca.pem",
        ]);
        pki
    }

    /// The path of a file in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A key pair and a certificate issued by the CA for `subject` (an openssl `-subj` string).
    pub fn issue(&self, name: &str, kind: KeyKind, subject: &str) -> Party {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let cert = format!("{name}.pem");
        let ext = format!("{name}.ext");
        self.genkey(&key, kind);
        let usage = match kind {
            KeyKind::Brainpool => "digitalSignature,keyAgreement",
            KeyKind::Rsa(_) => "digitalSignature,keyEncipherment",
        };
        std::fs::write(
            self.path(&ext),
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,{usage}\n\
                 extendedKeyUsage=emailProtection\nsubjectKeyIdentifier=hash\n\
                 authorityKeyIdentifier=keyid\n"
            ),
        )
        .expect("write extension file");
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
