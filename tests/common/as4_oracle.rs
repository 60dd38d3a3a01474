//! The independent AS4 wire oracle (`tests/as4_oracle/oracle.py`) called from Rust tests.
//!
//! The oracle is a Python program that knows nothing of asx-rs: it parses the captured HTTP
//! request (and optionally the response, the receipt), checks the BDEW profile values, verifies
//! the WS-Security signature with lxml's C14N, python-xmlsec and `cryptography`, decrypts the
//! attachments with `cryptography` and compares the receipt's NRR digests. This module writes the
//! bytes to a temporary directory, runs it, and parses its JSON report.
//!
//! Use it from a test file with `#[path = "common/as4_oracle.rs"] mod as4_oracle;` and guard the
//! test with [`require_python`]:
//!
//! ```ignore
//! if !as4_oracle::require_python("my_test") { return; }
//! let report = as4_oracle::check_wire(&body, &content_type, &key_pem_path, Some(&cert_path));
//! assert!(report.verified(), "{report}");
//! ```
//!
//! The Python side needs `pip install -r tests/as4_oracle/requirements.txt`; `.ci/run` installs
//! it into a virtual environment and names its interpreter in `AS4_ORACLE_PYTHON`.
#![allow(dead_code)] // each test file uses a different part of it

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The oracle's exit code when everything verified.
pub const EXIT_OK: i32 = 0;
/// A verification step (signature, digest, decryption, receipt) failed.
pub const EXIT_VERIFY: i32 = 1;
/// Only profile deviations that were not allowed.
pub const EXIT_PROFILE: i32 = 2;

/// The Python interpreter: `AS4_ORACLE_PYTHON` (the CI virtual environment) or `python3`.
pub fn python() -> PathBuf {
    std::env::var_os("AS4_ORACLE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// The oracle script in this checkout.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/as4_oracle/oracle.py")
}

/// Whether the interpreter runs and has the oracle's packages (with brainpool support):
/// `Err` says what is missing.
pub fn python_ready() -> Result<(), String> {
    let probe = "import lxml.etree, xmlsec; \
                 from cryptography.hazmat.primitives.asymmetric import ec; \
                 ec.generate_private_key(ec.BrainpoolP256R1())";
    match Command::new(python()).args(["-c", probe]).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{} cannot import the oracle's packages: {}",
            python().display(),
            // The last line of a traceback names the missing module.
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or_default()
        )),
        Err(e) => Err(format!("cannot run {}: {e}", python().display())),
    }
}

/// `true` when the oracle can run. Without its Python packages this fails the test under `CI`
/// (a missing install step must not turn into a silent pass) and otherwise prints why the test
/// is skipped and returns `false`.
pub fn require_python(test: &str) -> bool {
    match python_ready() {
        Ok(()) => true,
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: the AS4 oracle cannot run under CI: {why} \
                 (pip install -r tests/as4_oracle/requirements.txt, or set AS4_ORACLE_PYTHON)"
            );
            eprintln!(
                "NOTICE: {test} skipped: {why} \
                 (pip install -r tests/as4_oracle/requirements.txt)"
            );
            false
        }
    }
}

/// What to give the oracle beyond the request.
#[derive(Debug, Default, Clone)]
pub struct Check<'a> {
    /// The recipient's encryption certificate (PEM): the recipient SKI must match it.
    pub recipient_cert_pem: Option<&'a Path>,
    /// The CA certificate (PEM) that must have issued the message and receipt signers.
    pub trust_anchor_pem: Option<&'a Path>,
    /// The HTTP response body and its Content-Type: the receipt to verify.
    pub receipt: Option<(&'a [u8], &'a str)>,
    /// Profile deviation codes that do not fail the run (known findings, each named).
    pub allow_deviations: &'a [&'a str],
}

/// Check one captured AS4 request: signature, decryption, profile values. No receipt, no
/// allowed deviations (every deviation shows in [`OracleReport::deviation_codes`] and makes
/// [`OracleReport::verified`] false).
pub fn check_wire(
    body: &[u8],
    content_type: &str,
    recipient_key_pem: &Path,
    recipient_cert_pem: Option<&Path>,
) -> OracleReport {
    check(
        body,
        content_type,
        recipient_key_pem,
        &Check {
            recipient_cert_pem,
            ..Check::default()
        },
    )
}

/// Check one captured AS4 request (and its receipt, if given) with the options of `check`.
pub fn check(
    body: &[u8],
    content_type: &str,
    recipient_key_pem: &Path,
    opts: &Check<'_>,
) -> OracleReport {
    let dir = tempfile::tempdir().expect("temporary directory for the oracle");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write oracle input");
        path
    };
    let body_path = write("request.bin", body);
    let ctype_path = write("request.content-type", content_type.as_bytes());
    let out_dir = dir.path().join("payloads");

    let mut cmd = Command::new(python());
    // Keep the checkout clean: no __pycache__ beside the script.
    cmd.env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(script())
        .arg("--body")
        .arg(&body_path)
        .arg("--content-type-file")
        .arg(&ctype_path)
        .arg("--key")
        .arg(recipient_key_pem)
        .arg("--out")
        .arg(&out_dir);
    if let Some(cert) = opts.recipient_cert_pem {
        cmd.arg("--cert").arg(cert);
    }
    if let Some(anchor) = opts.trust_anchor_pem {
        cmd.arg("--trust-anchor").arg(anchor);
    }
    if let Some((receipt, receipt_type)) = opts.receipt {
        cmd.arg("--receipt")
            .arg(write("response.bin", receipt))
            .arg("--receipt-content-type")
            .arg(receipt_type);
    }
    for code in opts.allow_deviations {
        cmd.arg("--allow-deviation").arg(code);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python().display()));
    let exit_code = out.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json: OracleJson = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the oracle (exit {exit_code}) printed no JSON report ({e}):\n{stderr}\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    OracleReport {
        exit_code,
        json,
        stderr,
        dir,
    }
}

/// The oracle's verdict: its exit code, JSON report and stderr, and the decrypted payloads.
#[derive(Debug)]
pub struct OracleReport {
    /// [`EXIT_OK`], [`EXIT_VERIFY`] or [`EXIT_PROFILE`].
    pub exit_code: i32,
    /// The parsed JSON report.
    pub json: OracleJson,
    /// One line per failed step or unexpected deviation.
    pub stderr: String,
    dir: tempfile::TempDir,
}

impl OracleReport {
    /// Everything verified and no deviation beyond the allowed ones.
    pub fn verified(&self) -> bool {
        self.exit_code == EXIT_OK && self.json.errors.is_empty()
    }

    /// The codes of all profile deviations found, allowed or not, in report order.
    pub fn deviation_codes(&self) -> Vec<&str> {
        self.json
            .profile_deviations
            .iter()
            .map(|d| d.code.as_str())
            .collect()
    }

    /// The failed steps (e.g. `request.reference #as4-messaging`), in report order.
    pub fn failed_steps(&self) -> Vec<&str> {
        self.json.errors.iter().map(|e| e.step.as_str()).collect()
    }

    /// The error of `step`, if that step failed.
    pub fn error(&self, step: &str) -> Option<&StepError> {
        self.json.errors.iter().find(|e| e.step == step)
    }

    /// The decrypted, decompressed bytes of the payload at `index` of the report.
    pub fn payload_bytes(&self, index: usize) -> Vec<u8> {
        let file = self.json.payloads[index]
            .file
            .as_ref()
            .expect("the oracle wrote the payload");
        std::fs::read(self.dir.path().join("payloads").join(file)).expect("read payload")
    }
}

impl fmt::Display for OracleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "AS4 oracle exit {}:", self.exit_code)?;
        for e in &self.json.errors {
            writeln!(f, "  FAILED {}: {}", e.step, e.message)?;
        }
        for d in &self.json.profile_deviations {
            writeln!(f, "  deviation {}: {}", d.code, d.detail)?;
        }
        write!(f, "{}", self.stderr)
    }
}

/// The JSON report (the fields tests assert on; the rest stays in `other`).
#[derive(Debug, Deserialize)]
pub struct OracleJson {
    /// `valid` when the signature value and every reference digest verified.
    pub signature: String,
    /// RFC 4514 subject of the BinarySecurityToken's end-entity certificate.
    pub signer_subject: Option<String>,
    /// Every `ds:Reference` of the message's SignedInfo.
    pub references: Vec<Reference>,
    /// The decrypted, decompressed payloads.
    pub payloads: Vec<PayloadReport>,
    /// Profile deviations, allowed or not.
    pub profile_deviations: Vec<Deviation>,
    /// Failed verification steps.
    pub errors: Vec<StepError>,
    /// Present when a receipt was checked and could be parsed.
    pub receipt: Option<ReceiptReport>,
    /// The rest of the report (encryption, message, signature detail, ...).
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// One `ds:Reference` as the oracle recomputed it.
#[derive(Debug, Deserialize)]
pub struct Reference {
    pub uri: String,
    /// `Messaging`, `Body`, `attachment`, ... (absent when unresolvable).
    pub covers: Option<String>,
    pub digest_method: Option<String>,
    pub digest_value: String,
    #[serde(default)]
    pub digest_ok: bool,
}

/// One decrypted payload.
#[derive(Debug, Deserialize)]
pub struct PayloadReport {
    pub content_id: String,
    /// Hex SHA-256 of the decompressed payload.
    pub sha256: String,
    pub size: usize,
    pub mime_type: Option<String>,
    pub file: Option<String>,
}

/// A profile deviation.
#[derive(Debug, Deserialize)]
pub struct Deviation {
    pub code: String,
    pub detail: String,
}

/// A failed verification step.
#[derive(Debug, Deserialize)]
pub struct StepError {
    pub step: String,
    pub message: String,
}

/// The receipt part of the report.
#[derive(Debug, Deserialize)]
pub struct ReceiptReport {
    pub signature: String,
    pub signer_subject: Option<String>,
    pub ref_to_message_id: String,
    pub nrr_references: Vec<NrrReference>,
    pub nrr_matches: Option<bool>,
}

/// One `ebbp:MessagePartNRInformation/ds:Reference` of a receipt.
#[derive(Debug, Deserialize)]
pub struct NrrReference {
    pub uri: String,
    pub digest_value: String,
}
