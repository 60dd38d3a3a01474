//! The commands as a user runs them: `parse` (formats, exit codes, error output) and `answer`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mako-gateway"))
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples/syntax")
        .join(name)
}

fn run_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = binary()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

const APERAK: &str = "UNA:+.? 'UNB+UNOC:3+9900000000003:500+9900000000010:500+251001:0815+REF1'UNH+M1+APERAK:D:07B:UN:2.1i'BGM+312+X'UNT+3+M1'UNZ+1+REF1'";

#[test]
fn json_format_summarises_interchanges_and_messages() {
    let out = run_with_stdin(&["parse", "-", "--format", "json"], APERAK.as_bytes());
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"interchanges": [{
            "syntax": "UNOC:3",
            "sender": {"id": "9900000000003", "qualifier": "500"},
            "recipient": {"id": "9900000000010", "qualifier": "500"},
            "control_ref": "REF1",
            "messages": [{"ref": "M1", "type": "APERAK", "version": "D:07B:UN:2.1i", "segments": 3}],
            "segments": 5
        }]})
    );
    // Keys come in the documented order.
    let text = String::from_utf8(out.stdout).unwrap();
    let order: Vec<usize> = [
        "\"syntax\"",
        "\"sender\"",
        "\"recipient\"",
        "\"control_ref\"",
        "\"messages\"",
    ]
    .iter()
    .map(|k| text.find(k).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn json_error_points_into_the_offending_segment() {
    let bad = APERAK.replace("UNT+3+M1", "UNT+7+M1");
    let out = run_with_stdin(&["parse", "-", "--format", "json"], bad.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &json["error"];
    assert_eq!(e["kind"], "control_count_mismatch");
    assert_eq!(e["tag"], "UNT");
    assert_eq!(e["segment"], 4);
    assert_eq!(e["line"], 1);
    let offset = e["offset"].as_u64().unwrap() as usize;
    let unt = bad.find("UNT+").unwrap();
    let unt_end = unt + bad[unt..].find('\'').unwrap();
    assert!(
        (unt..unt_end).contains(&offset),
        "offset {offset} outside UNT"
    );
    assert_eq!(e["column"].as_u64().unwrap() as usize, offset + 1);
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("declares 7, counted 3"));
}

#[test]
fn text_error_is_one_line_with_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("mako-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.edi");
    std::fs::write(
        &file,
        APERAK
            .replace('\'', "'\n")
            .replace("BGM+312+X", "BGM+312+?X"),
    )
    .unwrap();
    let out = binary().args(["parse"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let expected_prefix = format!("{}:4:9: error: release character", file.display());
    assert!(stderr.starts_with(&expected_prefix), "{stderr}");
    assert!(out.stdout.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn edifact_format_writes_every_sample_back_unchanged() {
    for entry in std::fs::read_dir(sample("")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "edi") {
            continue;
        }
        let out = binary()
            .args(["parse", "--format", "edifact"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", path.display());
        assert_eq!(
            out.stdout,
            std::fs::read(&path).unwrap(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn text_format_shows_decoded_values() {
    let out = binary()
        .args(["parse"])
        .arg(sample("unoc_umlauts_crlf.edi"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\"Müller:Jürgen\":Anna"), "{text}");
    assert!(text.contains("O'Brien ? Maß"), "{text}");
    assert!(
        text.contains("message 1: UTILMD D:11A:UN:S2.1, 6 segments"),
        "{text}"
    );
}

#[test]
fn stats_format_prints_throughput_figures() {
    let out = binary()
        .args(["parse", "--format", "stats"])
        .arg(sample("custom_delimiters_group.edi"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["segments"], 11);
    assert_eq!(json["messages"], 2);
    assert!(json["parse_s"].as_f64().unwrap() >= 0.0);
}

#[test]
fn missing_file_and_bad_usage_exit_with_2() {
    let out = binary()
        .args(["parse", "does-not-exist.edi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does-not-exist.edi"));
    let out = binary()
        .args(["parse", "x.edi", "--format", "yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = binary().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn render_writes_the_order_and_refuses_what_the_rules_forbid() {
    let orders = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/orders");
    let out = binary()
        .arg("render")
        .arg(orders.join("grid_fee_modul_1_und_3.json"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text: String = out.stdout.iter().map(|&b| b as char).collect();
    // Modul 3 on top of an active Modul 1 is ordered as "Modul 1 und Modul 3".
    assert!(text.contains("CAV+ZH9:::9991000002595'"), "{text}");
    // What render writes validates (the FV2610 grammar only warns that it is unverified).
    let validated = run_with_stdin(&["validate", "-"], &out.stdout);
    assert_eq!(
        validated.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&validated.stdout)
    );

    let refused = binary()
        .arg("render")
        .arg(orders.join("grid_fee_modul_3_analog_rejected.json"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Modul 3 needs a smart meter"));
}

/// The outbound samples are what the gateway writes today: each is regenerated from its input
/// (an order JSON for `render`, an inbound sample for `ack`) and compared byte for byte, so
/// the samples cannot drift from the builders.
#[test]
fn outbound_samples_are_exactly_what_the_gateway_writes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let rendered = [
        ("grid_fee_modul_1.json", "orders_17133_modul1_fv2610.edi"),
        ("grid_fee_modul_2.json", "orders_17133_modul2.edi"),
        (
            "grid_fee_modul_1_und_3.json",
            "orders_17133_modul1_und_3.edi",
        ),
        ("meter_order_imsys.json", "orders_17011_imsys.edi"),
        (
            "meter_order_imsys_customer_contact.json",
            "orders_17011_imsys_customer_contact.edi",
        ),
        (
            "billing_data_answer_55220.json",
            "utilmd_55220_billing_data_answer.edi",
        ),
    ];
    for (input, sample) in rendered {
        let out = binary()
            .arg("render")
            .arg(root.join("orders").join(input))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{input}");
        let expected = std::fs::read(root.join("outbound").join(sample)).unwrap();
        assert!(
            out.stdout == expected,
            "{sample} differs from render {input}"
        );
    }
    let out = binary()
        .args(["ack", "--now", "2026-06-03T10:00:00"])
        .arg(root.join("inbound/ordrsp_19133_broken.edi"))
        .output()
        .unwrap();
    let written: Vec<u8> = out
        .stdout
        .split_inclusive(|&b| b == b'\n')
        .filter(|line| !line.starts_with(b"#"))
        .flatten()
        .copied()
        .collect();
    let expected = std::fs::read(root.join("outbound/aperak_313_z29_answer.edi")).unwrap();
    assert!(
        written == expected,
        "aperak_313_z29_answer.edi differs from ack"
    );
}

/// Issue 12: a configuration whose key and certificate files (AS4 and e-mail) cannot be read
/// is refused as a whole, every error at once, with exit code 64 and before the store is
/// touched (the AS4 errors used to surface only after the database was opened, with exit 1).
#[test]
fn serve_reports_every_key_file_error_at_once_before_touching_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db").join("gateway.db");
    let missing = |name: &str| dir.path().join(name).display().to_string();
    let config = format!(
        r#"own_id = "9900000000003"
data_dir = {data:?}
[database]
url = "sqlite://{db}"
[api]
addr = "127.0.0.1:0"
[as4]
signing_key = {sk:?}
signing_cert = {sc:?}
encryption_key = {ek:?}
encryption_cert = {ec:?}
tls_key = {tk:?}
tls_cert = {tc:?}
trust_anchors = [{ca:?}]
[email]
address = "gateway@mako.test"
signing_key = {mk:?}
signing_cert = {mc:?}
[email.smtp]
host = "127.0.0.1"
"#,
        data = dir.path().join("data").display().to_string(),
        db = db.display(),
        sk = missing("as4-sign.key"),
        sc = missing("as4-sign.pem"),
        ek = missing("as4-enc.key"),
        ec = missing("as4-enc.pem"),
        tk = missing("tls.key"),
        tc = missing("tls.pem"),
        ca = missing("ca.pem"),
        mk = missing("mail.key"),
        mc = missing("mail.pem"),
    );
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, config).unwrap();
    let out = binary()
        .env_clear()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    for key in [
        "email.signing_key",
        "as4.signing_key",
        "as4.encryption_key",
        "as4.trust_anchors[0]",
    ] {
        assert!(stderr.contains(key), "{key} not reported: {stderr}");
    }
    assert!(stderr.contains("nothing started"), "{stderr}");
    assert!(
        !db.exists() && !db.parent().unwrap().exists(),
        "the store was touched"
    );
}

/// `answer` as the README's tour runs it: a sample templated to a sent ORDERS, written into a
/// folder under a temporary name first, the final name printed; it validates, and a sent file
/// that is no interchange is refused with exit 1.
#[test]
fn answer_writes_a_partners_answer_to_a_sent_orders_into_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let sent = dir.path().join("9904292000003_MG00000003.edi");
    std::fs::write(
        &sent,
        "UNA:+.? 'UNB+UNOC:3+9900000000003:500+9904292000003:500+261207:0730+MG00000003'\
         UNH+MG00000002+ORDERS:D:09B:UN:1.4c'BGM+Z91+MG00000001'UNT+3+MG00000002'UNZ+1+MG00000003'",
    )
    .unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/inbound");
    let out = binary()
        .arg("answer")
        .arg(samples.join("ordrsp_19133_a99_rejected.edi"))
        .arg("--to")
        .arg(&sent)
        .arg("--out")
        .arg(&inbox)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let written = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert_eq!(written.parent(), Some(inbox.as_path()));
    let names: Vec<String> = std::fs::read_dir(&inbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    let text = String::from_utf8_lossy(&std::fs::read(&written).unwrap()).into_owned();
    assert!(
        text.contains("UNB+UNOC:3+9904292000003:500+9900000000003:500+"),
        "{text}"
    );
    assert!(text.contains("RFF+ON:MG00000001'"), "{text}");
    let valid = binary().arg("validate").arg(&written).output().unwrap();
    assert_eq!(valid.status.code(), Some(0), "{valid:?}");

    std::fs::write(&sent, "not EDIFACT").unwrap();
    let out = binary()
        .arg("answer")
        .arg(samples.join("ordrsp_19133_a99_rejected.edi"))
        .arg("--to")
        .arg(&sent)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
