//! The `wasmcell` binary: parse, execute, map the result to an exit code.

use clap::Parser as _;
use std::process::ExitCode;
use wasmcell::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Usage errors exit 2; --help and --version print and exit 0.
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { wasmcell::EXIT_USAGE } else { 0 });
        }
    };
    match cli.execute() {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            wasmcell::cli::print_error(&err);
            ExitCode::from(wasmcell::cli::exit_code_for_error(&err))
        }
    }
}
