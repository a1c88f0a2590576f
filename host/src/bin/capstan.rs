//! The `capstan` binary. All logic lives in [`capstan::cli::main`].

fn main() {
    std::process::exit(capstan::cli::main());
}
