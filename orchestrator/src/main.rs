//! `magi`: the user's command line. A thin shell over the library crates.

fn main() {
    std::process::exit(magi::cli::main());
}
