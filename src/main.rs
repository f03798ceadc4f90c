//! The `rooftop` binary: see `rooftop --help`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    rooftop::cli::main().await
}
