//! The `wasmcell` binary: parse, execute, map the result to an exit code.

mod cli;

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
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
            cli::print_error(&err);
            ExitCode::from(cli::exit_code_for_error(&err))
        }
    }
}
