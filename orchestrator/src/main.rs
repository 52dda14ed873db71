//! `magi`: the user's command line. A thin shell over the library crates.

fn main() {
    // The embedded default runs node agents in this process: shipped archives' memory goes
    // back to the system once they are unpacked, as in `magi-node`.
    magi_node::release_large_blocks();
    // Library warnings (a message the bus dropped, a record not stored) go to stderr;
    // RUST_LOG changes the level.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(magi_bus::amqp::log_filter("warn")));
    // Logging starts before the command line is parsed, so the flag is looked for here.
    let no_color = std::env::args().any(|a| a == "--no-color" || a == "--nocolor");
    let color = magi_proto::color_allowed(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        no_color,
    );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    std::process::exit(magi::cli::main());
}
