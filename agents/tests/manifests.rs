//! The module directories in `agents/modules/` match the agents they start.

use std::path::Path;

use serde_json::Value;

fn manifest(module: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("modules")
        .join(module)
        .join("magi-agent.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check(module: &str, command: &str, methods: &[&str]) {
    let m = manifest(module);
    assert_eq!(m["name"], module);
    assert_eq!(m["command"], serde_json::json!([command]));
    let listed: Vec<&str> = m["methods"]
        .as_array()
        .expect("a method list")
        .iter()
        .map(|x| x["name"].as_str().expect("a method name"))
        .collect();
    assert_eq!(
        listed, methods,
        "{module}: the manifest lists the agent's methods, in order"
    );
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("modules")
            .join(module)
            .join("README.md")
            .is_file(),
        "{module} has a README.md"
    );
}

#[test]
fn each_module_manifest_names_its_binary_and_exactly_its_methods() {
    check(
        "apache",
        "magi-http-server",
        magi_agents::http_server::METHODS,
    );
    check(
        "http_client",
        "magi-http-client",
        magi_agents::http_client::METHODS,
    );
    check(
        "pktcounters",
        "magi-pktcounters",
        magi_agents::pktcounters::METHODS,
    );
    check("flooder", "magi-flooder", magi_agents::flooder::METHODS);
    check(
        "link_up_down",
        "magi-link-up-down",
        magi_agents::link_up_down::METHODS,
    );
    // The binaries the commands name are built by this crate.
    for bin in [
        env!("CARGO_BIN_EXE_magi-http-server"),
        env!("CARGO_BIN_EXE_magi-http-client"),
        env!("CARGO_BIN_EXE_magi-pktcounters"),
        env!("CARGO_BIN_EXE_magi-flooder"),
        env!("CARGO_BIN_EXE_magi-link-up-down"),
    ] {
        assert!(Path::new(bin).is_file(), "{bin}");
    }
}
