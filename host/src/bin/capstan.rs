//! The `capstan` binary: parse arguments, run, print the error chain, exit
//! with a meaningful code (0 ok, 1 run not successful, 2 invalid input,
//! 3 other errors).

use clap::Parser;

use capstan::cli::{Cli, ExitCode};

fn main() {
    let cli = Cli::parse();
    let filter = match cli.verbose {
        0 => "warn",
        1 => "info,wasmtime=warn,cranelift=warn",
        _ => "debug,wasmtime=info,cranelift=info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG").unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = match cli.execute() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            if e.downcast_ref::<capstan::store::StoreError>().is_some_and(|s| {
                matches!(s, capstan::store::StoreError::NoSuchRun(_))
            }) {
                ExitCode::Invalid
            } else if e.downcast_ref::<capstan::manifest::PluginError>().is_some() {
                ExitCode::Invalid
            } else {
                ExitCode::Error
            }
        }
    };
    std::process::exit(code as i32);
}
