//! The documented configuration: `deploy/mako-gateway.example.toml` loads, documents every
//! option and environment variable, and the deployment files agree with the defaults.

use std::path::Path;

use mako_gateway::config::{Config, DEFAULT_GRACE_SECONDS, ENV_OVERRIDES, OPTIONS};

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// The example with every switched-off setting (`#key = …`, `#[section]`, `#    { … },`)
/// switched on; explanations (`# …`) stay comments.
fn example_with_everything_on(example: &str) -> String {
    example
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_loads_without_errors_and_is_the_embedded_one() {
    let example = read("deploy/mako-gateway.example.toml");
    assert_eq!(Config::example_toml(), example);
    let from_example = Config::load(Some(&example), &no_env).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors.iter().map(|e| format!("{e}\n")).collect::<String>()
        )
    });
    // The values written in the example are the defaults, as its header says.
    assert_eq!(from_example, Config::load(None, &no_env).unwrap());
}

#[test]
fn the_example_loads_with_every_switched_off_setting_switched_on() {
    let all_on = example_with_everything_on(Config::example_toml());
    let config = Config::load(Some(&all_on), &no_env).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors.iter().map(|e| format!("{e}\n")).collect::<String>()
        )
    });
    assert!(config.api.token.is_some());
    assert!(config.webhook.is_some());
    assert_eq!(config.partners.len(), 3);
    assert_eq!(config.partners[0].statuses.len(), 3);
}

#[test]
fn the_example_documents_every_option_with_a_comment() {
    let all_on = example_with_everything_on(Config::example_toml());
    let lines: Vec<&str> = all_on.lines().collect();
    for option in OPTIONS {
        // `section.key`, `partners[].key` or `partners[].statuses[].key`
        let (section, key) = match option.rsplit_once('.') {
            Some((section, key)) => (section, key),
            None => ("", option),
        };
        if section == "partners[].statuses[]" {
            let needle = format!("{key} = ");
            assert!(
                lines.iter().any(|l| l.contains(&needle)),
                "{option}: no example value"
            );
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with("# ") && l.contains(&format!("`{key}`"))),
                "{option}: not explained in a comment"
            );
            continue;
        }
        let header = match section {
            "" => None,
            "partners[]" => Some("[[partners]]".to_string()),
            s => Some(format!("[{s}]")),
        };
        let start = match &header {
            None => 0,
            Some(h) => lines
                .iter()
                .position(|l| l == h)
                .unwrap_or_else(|| panic!("{option}: no {h} in the example")),
        };
        let at = lines[start..]
            .iter()
            .position(|l| l.starts_with(&format!("{key} = ")))
            .map(|i| start + i)
            .unwrap_or_else(|| panic!("{option}: not in the example"));
        assert!(
            lines[at - 1].starts_with("# "),
            "{option}: the line before it is not a comment"
        );
    }
}

#[test]
fn the_example_and_the_readmes_name_every_environment_variable() {
    let example = Config::example_toml();
    let readme = read("README.md");
    let deploy_readme = read("deploy/README.md");
    for (var, option) in ENV_OVERRIDES {
        assert!(example.contains(var), "{var} ({option}) not in the example");
        assert!(readme.contains(var), "{var} ({option}) not in README.md");
        assert!(
            deploy_readme.contains(var) || readme.contains(var),
            "{var} not documented"
        );
    }
}

/// Issue 15: the `[email]` comment said TLS to the mail servers was not built, long after it
/// was; it now says what `tls` does, and that the default (STARTTLS) is what loads.
#[test]
fn regression_the_email_comment_of_the_example_says_what_tls_does() {
    let example = Config::example_toml();
    let comment: String = example
        .lines()
        .skip_while(|l| !l.starts_with("# The e-mail transport"))
        .take_while(|l| *l != "#[email]")
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!comment.is_empty(), "no comment before #[email]");
    assert!(!comment.contains("not built"), "{comment}");
    for needle in [
        "STARTTLS by default",
        "loopback",
        "Without [email.imap] no mail",
    ] {
        assert!(comment.contains(needle), "{needle:?} not in:\n{comment}");
    }
    assert!(example.contains("#tls = \"starttls\""));
}

#[test]
fn the_systemd_unit_waits_longer_than_the_grace_period_and_does_not_restart_on_config_errors() {
    let unit = read("deploy/mako-gateway.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing in the unit"))
            .to_string()
    };
    let stop: u64 = value("TimeoutStopSec")
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(stop > DEFAULT_GRACE_SECONDS, "TimeoutStopSec={stop}");
    assert_eq!(
        value("RestartPreventExitStatus"),
        mako_gateway::config::exit_code_for_config_errors().to_string()
    );
}

#[test]
fn the_compose_file_waits_longer_than_the_grace_period() {
    let compose = read("deploy/compose.yaml");
    // The gateway settings are written once (`x-gateway: &gateway`) and merged into both
    // instances.
    let shared = compose
        .split("\nx-gateway: &gateway\n")
        .nth(1)
        .and_then(|rest| rest.split("\nservices:\n").next())
        .expect("x-gateway block before services");
    let period: u64 = shared
        .lines()
        .find_map(|l| l.trim().strip_prefix("stop_grace_period:"))
        .expect("stop_grace_period in x-gateway")
        .trim()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(
        period > DEFAULT_GRACE_SECONDS,
        "stop_grace_period: {period}s"
    );
    assert_eq!(compose.matches("<<: *gateway").count(), 2, "two instances");
}

/// Issue 15 (AS4): a partner that only sends to us over AS4 needs its certificates, not an
/// endpoint of its own; `as4_url` is optional.
#[test]
fn an_as4_partner_that_only_sends_to_us_needs_no_as4_url() {
    let text = "[as4]\nsigning_key = \"s.key\"\nsigning_cert = \"s.pem\"\n\
                encryption_key = \"e.key\"\nencryption_cert = \"e.pem\"\n\
                tls_key = \"t.key\"\ntls_cert = \"t.pem\"\ntrust_anchors = [\"ca.pem\"]\n\
                [[partners]]\nid = \"9900269000000\"\ntransport = \"as4\"\n\
                signing_cert = \"vnb-sign.pem\"\nencryption_cert = \"vnb-encrypt.pem\"\n";
    let config = Config::load(Some(text), &no_env).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors.iter().map(|e| format!("{e}\n")).collect::<String>()
        )
    });
    let as4 = config.partners[0]
        .as4
        .as_ref()
        .expect("the partner's AS4 settings");
    assert_eq!(as4.url, None);
    assert_eq!(as4.signing_cert, Path::new("vnb-sign.pem"));
}
