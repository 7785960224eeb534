//! The `receiver` binary: parses the command line and hands over to [`receiver::cli`], which
//! runs the command and picks the exit code (0 ok, 1 runtime failure, 2 bad config or usage).

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    receiver::cli::main(receiver::cli::Cli::parse()).await
}
