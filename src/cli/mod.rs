//! The command line: subcommands that read files, call the pure core and print.
//!
//! Exit codes (documented in the README): 0 success, 1 the input is invalid, 2 usage or I/O
//! error.

mod answer;
mod daemon;
mod input;
mod parse;
mod render;
mod validate;

pub use answer::template_answer;
pub use parse::{error_json, render_text, summary_json, write_summary_json};
pub use render::render_order;
pub use validate::{render_findings, render_plan};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit code for input that is not valid EDIFACT (or fails validation).
pub const EXIT_INVALID_INPUT: u8 = 1;
/// Exit code for usage and I/O errors (clap uses 2 for usage errors too).
pub const EXIT_USAGE: u8 = 2;

/// mako-gateway: EDIFACT gateway for German electricity market communication.
#[derive(Debug, Parser)]
#[command(name = "mako-gateway", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse an EDIFACT file (or `-` for standard input) and print it.
    Parse {
        /// The file to read, or `-` for standard input.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ParseFormat::Text)]
        format: ParseFormat,
    },
    /// Validate every message against its MIG and AHB rules; exit 1 if there is an error.
    Validate {
        /// The file to read, or `-` for standard input.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = FindingsFormat::Text)]
        format: FindingsFormat,
        /// TOML configuration whose `[routing]` decides each message's route (handle,
        /// forward, refuse); without it the default table applies.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write the interchange for an order given as JSON (see samples/orders/).
    Render {
        /// The order JSON file, or `-` for standard input.
        file: PathBuf,
    },
    /// Print the CONTRL (and APERAK, if due) the gateway would send back for a file.
    Ack {
        /// The file to read, or `-` for standard input.
        file: PathBuf,
        /// The time of the answer, UTC (`2026-11-23T10:00:00`); default: now.
        #[arg(long, value_parser = parse_utc)]
        now: Option<chrono::NaiveDateTime>,
        /// Answer as a gas market partner: a CONTRL on every interchange.
        #[arg(long)]
        gas: bool,
    },
    /// Run the gateway: API, file-drop transport, inbound and outbound loops, webhooks.
    Serve {
        /// TOML configuration (see deploy/mako-gateway.example.toml); without it the
        /// defaults and MAKO_* environment variables apply.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write a partner's answer to an interchange the gateway sent, from one of
    /// samples/inbound/ (for trying the gateway out: drop it into the file drop's inbox).
    Answer {
        /// The sample answer (e.g. samples/inbound/ordrsp_19133_a99_rejected.edi).
        sample: PathBuf,
        /// The interchange it answers (e.g. the ORDERS in data/outbox/).
        #[arg(long)]
        to: PathBuf,
        /// Where to write it: a file, or a folder (e.g. data/inbox); default: standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The free text of its FTX segments.
        #[arg(long)]
        text: Option<String>,
    },
    /// Feed saved inbound interchanges through the inbound path as if received, and print
    /// what each matched, changed and would send back. Exit 1 if any matched nothing.
    Replay {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Database URL (default: the configured one, else the embedded SQLite file).
        #[arg(long)]
        db: Option<String>,
        /// Write nothing: no journal entry, no state change, no outbox item.
        #[arg(long)]
        dry_run: bool,
        /// TOML configuration.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Output formats of `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FindingsFormat {
    /// One line per finding.
    Text,
    /// JSON with every finding's fields.
    Json,
}

fn parse_utc(s: &str) -> Result<chrono::NaiveDateTime, String> {
    chrono::NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S")
        .map_err(|e| format!("expected YYYY-MM-DDTHH:MM:SS (UTC): {e}"))
}

/// Output formats of `parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ParseFormat {
    /// A readable tree: interchanges, messages, segments with their values.
    Text,
    /// A JSON summary of interchanges and messages.
    Json,
    /// The tree written back as EDIFACT (byte-identical to a valid input).
    Edifact,
    /// One JSON line of throughput figures (bytes, segments, seconds, MB/s, segments/s).
    Stats,
}

/// Runs the command line with the process arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Parse { file, format } => parse::run(&file, format),
        Command::Validate {
            file,
            format,
            config,
        } => validate::run_validate(&file, format == FindingsFormat::Json, config.as_deref()),
        Command::Ack { file, now, gas } => validate::run_ack(&file, now, gas),
        Command::Render { file } => render::run(&file),
        Command::Serve { config } => daemon::run_serve(config.as_deref()),
        Command::Answer {
            sample,
            to,
            out,
            text,
        } => answer::run(
            &sample,
            &to,
            out.as_deref(),
            text.as_deref(),
            crate::clock::Clock::system().now().naive_utc(),
        ),
        Command::Replay {
            paths,
            db,
            dry_run,
            config,
        } => daemon::run_replay(&paths, db.as_deref(), dry_run, config.as_deref()),
    }
}

use input::read_input;

/// How a path is named in messages.
fn display_name(path: &std::path::Path) -> String {
    if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    }
}
