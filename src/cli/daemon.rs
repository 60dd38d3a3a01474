//! `serve` and `replay`: the commands that run the gateway against its store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::EXIT_USAGE;
use crate::clock::Clock;
use crate::config::{exit_code_for_config_errors, Config, ConfigError, LogFormat};
use crate::daemon::serve::{kept_token, serve, signals, worker_name, ServeError, TOKEN_FILE};
use crate::daemon::setup::Setup;
use crate::plan::inbound::{Effect, InboundReport};
use crate::store::{Inserted, Store, Transport};
use crate::worker::receive::Journal;

/// Loads the configuration (file, if given, and the environment); every error is printed
/// and the process exits with 64 (EX_USAGE) before anything binds.
pub(super) fn load_config(file: Option<&Path>) -> Result<Config, ExitCode> {
    let text = match file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!(
                    "{}: error: cannot read the configuration: {e}",
                    path.display()
                );
                return Err(ExitCode::from(exit_code_for_config_errors()));
            }
        },
        None => None,
    };
    let env = |name: &str| std::env::var(name).ok();
    Config::load(text.as_deref(), &env).map_err(|errors| config_errors(file, &errors))
}

/// Prints every configuration error (the file's own, and those of the key and certificate
/// files it names) and gives the exit code 64 (EX_USAGE).
fn config_errors(file: Option<&Path>, errors: &[ConfigError]) -> ExitCode {
    let name = file.map_or("configuration".to_string(), |p| p.display().to_string());
    for e in errors {
        eprintln!("{name}: error: {e}");
    }
    eprintln!("{} configuration error(s); nothing started", errors.len());
    ExitCode::from(exit_code_for_config_errors())
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `mako-gateway serve [--config FILE]`.
pub(super) fn run_serve(file: Option<&Path>) -> ExitCode {
    let config = match load_config(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(&config);
    match crate::daemon::serve::raise_descriptor_limit() {
        Some(limit) if limit < 4096 => {
            tracing::warn!(
                limit,
                "few file descriptors: raise LimitNOFILE (see deploy/mako-gateway.service)"
            )
        }
        Some(limit) => tracing::info!(limit, "file descriptors"),
        None => {}
    }
    if config.uses_test_own_id() {
        tracing::warn!(
            own_id = %config.own_id,
            "MAKO_OWN_ID is not set: using the documented test market partner ID"
        );
    }
    let token = match &config.api.token {
        Some(t) => t.clone(),
        None => match kept_token(&config.data_dir) {
            Ok((t, true)) => {
                // Printed once, on standard output, so that the operator can copy it.
                println!(
                    "API token (generated and kept in {}, mode 0600; set MAKO_API_TOKEN to choose one): {t}",
                    config.data_dir.join(TOKEN_FILE).display()
                );
                t
            }
            Ok((t, false)) => {
                tracing::info!(file = %config.data_dir.join(TOKEN_FILE).display(), "API token: the one generated on the first run");
                t
            }
            Err(e) => {
                eprintln!("error: the API token: {e}");
                return ExitCode::from(1);
            }
        },
    };
    match runtime().block_on(serve(config, token, Clock::system(), signals(), None)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(ServeError::Config(errors)) => config_errors(file, &errors),
        Err(e) => {
            tracing::error!(error = %e, "the gateway stopped");
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// The files named on the command line, directories walked (sorted, hidden files skipped).
fn files_of(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(d) = stack.pop() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                entries.sort();
                for e in entries {
                    let hidden = e
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'));
                    if hidden {
                        continue;
                    }
                    if e.is_dir() {
                        stack.push(e);
                    } else {
                        out.push(e);
                    }
                }
            }
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn describe(name: &str, report: &InboundReport) -> String {
    let mut out = format!(
        "{name}: from {} interchange {} PIDs {:?}\n",
        report.facts.sender.as_deref().unwrap_or("?"),
        report.facts.interchange_reference.as_deref().unwrap_or("?"),
        report.facts.pids
    );
    for e in &report.syntax_errors {
        out.push_str(&format!("  syntax error: {e}\n"));
    }
    for effect in &report.effects {
        // A routed message gets its own line below.
        if let Effect::Nothing { message, .. } = effect {
            if report.routed.iter().any(|m| &m.message_ref == message) {
                continue;
            }
        }
        let line = match effect {
            Effect::GridFee {
                from,
                order,
                event,
                message,
            } => format!(
                "  {message}: grid-fee reduction {} {from} -> {}{}",
                order.id,
                crate::store::serde_text(&order.status),
                event.map_or(String::new(), |e| format!(" (event {e})"))
            ),
            Effect::Meter {
                from,
                order,
                event,
                message,
            } => format!(
                "  {message}: meter order {} {from} -> {}{}",
                order.id,
                crate::store::serde_text(&order.status),
                event.map_or(String::new(), |e| format!(" (event {e})"))
            ),
            Effect::NotApplied {
                order,
                reason,
                message,
            } => format!("  {message}: matched {order}, no transition: {reason}"),
            Effect::Clearing { reason, message } => {
                format!("  {message}: UNMATCHED, to clearing: {reason}")
            }
            Effect::Send { partner, pid, .. } => format!("  answer: UTILMD {pid} to {partner}"),
            Effect::PassThroughAnswered {
                messages,
                answer,
                message,
            } => format!(
                "  {message}: pass-through {} {}{}",
                messages.join(","),
                crate::store::serde_text(&answer.outcome),
                if answer.codes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", answer.codes.join(", "))
                }
            ),
            Effect::Nothing { reason, message } => format!("  {message}: no change: {reason}"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    for m in &report.routed {
        out.push_str(&routed_line(m));
    }
    for r in &report.replies {
        out.push_str(&format!("  back to the partner: {r}\n"));
    }
    out
}

/// `  M1: MSCONS 2.4c PID 13017: forwarded to the supplier core (checked; APERAK owed by the
/// core by 2026-10-02 10:00 UTC)`.
fn routed_line(m: &crate::plan::inbound::ReceivedMessage) -> String {
    use crate::plan::inbound::{AperakState, MessageState};
    let what = match m.pid {
        Some(pid) => format!("{} {} PID {pid}", m.message_type, m.version),
        None => format!("{} {}", m.message_type, m.version),
    };
    let route = match m.state {
        MessageState::Refused => "refused".to_string(),
        MessageState::Rejected => "forwarded, but rejected by our acknowledgement".to_string(),
        MessageState::New | MessageState::Taken => "forwarded to the supplier core".to_string(),
    };
    let checked = if m.checked {
        "checked"
    } else {
        "unchecked: no grammar"
    };
    let aperak = match (m.aperak, m.aperak_due) {
        (AperakState::Core, Some(due)) => {
            format!(
                "APERAK owed by the core by {} UTC",
                due.format("%Y-%m-%d %H:%M")
            )
        }
        (AperakState::Core, None) => "APERAK owed by the core".to_string(),
        (AperakState::Sent, _) => "APERAK sent by the gateway".to_string(),
        (AperakState::None, _) => "no APERAK".to_string(),
    };
    format!(
        "  {}: {what}: {route} ({checked}; {aperak})\n",
        m.message_ref
    )
}

/// `mako-gateway replay FILE|DIR… [--db URL] [--dry-run] [--config FILE]`.
pub(super) fn run_replay(
    paths: &[PathBuf],
    db: Option<&str>,
    dry_run: bool,
    config_file: Option<&Path>,
) -> ExitCode {
    let mut config = match load_config(config_file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(url) = db {
        config.database.url = url.to_string();
    }
    let setup = match Setup::load(&config, &Clock::system()) {
        Ok(s) => s,
        Err(errors) => return config_errors(config_file, &errors),
    };
    let files = match files_of(paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    runtime().block_on(async move {
        let store = match Store::connect(&config.database.url).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let worker = format!("replay-{}", worker_name());
        let inbound = setup.inbound_worker(&store, &worker);
        let journal = Journal::new(store.clone());
        let bar = (files.len() > 3).then(|| {
            let bar = indicatif::ProgressBar::new(files.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        let (mut processed, mut unmatched, mut duplicates, mut failed) = (0, 0, 0, 0);
        for file in &files {
            let name = file.display().to_string();
            let raw = match std::fs::read(file) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{name}: error: {e}");
                    failed += 1;
                    continue;
                }
            };
            let now = crate::clock::Clock::system().now();
            let result = if dry_run {
                inbound.dry_run(&raw, now).await.map(Some)
            } else {
                match journal.receive(raw, Transport::Replay, now).await {
                    Ok(Inserted::New(id)) => {
                        let claimed = async {
                            store
                                .conn()
                                .await?
                                .claim_journal_item(&id, inbound.name(), now, config.workers.lease)
                                .await
                        };
                        match claimed.await {
                            Ok(Some(item)) => inbound.process_item(&item, now, false).await.map(Some),
                            Ok(None) => Ok(None),
                            Err(e) => Err(e.into()),
                        }
                    }
                    Ok(Inserted::Duplicate(id)) => {
                        duplicates += 1;
                        let line = format!("{name}: already journaled as {id}; not processed again\n");
                        match &bar {
                            Some(b) => b.println(line.trim_end()),
                            None => print!("{line}"),
                        }
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                }
            };
            match result {
                Ok(Some(report)) => {
                    processed += 1;
                    if report.has_unmatched() {
                        unmatched += 1;
                    }
                    let text = describe(&name, &report);
                    match &bar {
                        Some(b) => b.println(text.trim_end()),
                        None => print!("{text}"),
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    failed += 1;
                    eprintln!("{name}: error: {e}");
                }
            }
            if let Some(b) = &bar {
                b.inc(1);
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        println!(
            "replayed {} file(s){}: {processed} processed, {unmatched} unmatched, {duplicates} already journaled, {failed} failed",
            files.len(),
            if dry_run { " (dry run: nothing written)" } else { "" }
        );
        store.close().await;
        if unmatched > 0 || failed > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    })
}
