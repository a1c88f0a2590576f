//! The capstan CLI for the tests (identical to `host/src/bin/capstan.rs`).

fn main() {
    std::process::exit(capstan::cli::main());
}
