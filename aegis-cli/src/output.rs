//! Printing: human text or JSON on stdout, never a panic on a closed pipe.

use std::fmt::Display;
use std::io::Write;

use serde_json::Value;

use crate::error::CliError;

/// `--json`, shared by every inspecting subcommand.
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct Format {
    /// Print JSON with stable snake_case field names: one value (`watch`: one object per
    /// line, per change) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Prints one line on stdout.
pub(crate) fn line(text: impl Display) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(CliError::Output)
}

/// Prints `value` as indented JSON (one value, over several lines).
pub(crate) fn json(value: &Value) -> Result<(), CliError> {
    line(serde_json::to_string_pretty(value).unwrap_or_default())
}

/// Prints `value` as JSON on one line (a line of a JSON-lines stream).
pub(crate) fn json_line(value: &Value) -> Result<(), CliError> {
    line(value)
}
