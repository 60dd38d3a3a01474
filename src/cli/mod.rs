//! The command line: subcommands that read files, call the pure core and print.
//!
//! Exit codes (documented in the README): 0 success, 1 the input is invalid, 2 usage or I/O
//! error.

mod parse;

pub use parse::{error_json, render_text, summary_json};

use std::io::Read;
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
    }
}

/// Reads a file, or standard input for `-`.
fn read_input(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().lock().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path)
    }
}

/// How a path is named in messages.
fn display_name(path: &std::path::Path) -> String {
    if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    }
}
