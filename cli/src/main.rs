//! The `wasmcell` command line: one struct per subcommand, each with
//! `execute(self)` returning the process exit code. It is a package of its
//! own, so the compiler holds it to the library's public API; what only a
//! command line has lives here: flags and their parsers, the advice that
//! names a flag, the terminal progress line, signal handling and the mapping
//! of errors to exit codes. `main` parses, executes and maps the result.

mod app;
mod check;
mod compile;
mod learn;
mod matrix;
mod progress;
mod run;
mod settings;
mod sign;
mod worker;

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match app::Cli::try_parse() {
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
            app::print_error(&err);
            ExitCode::from(app::exit_code_for_error(&err))
        }
    }
}
