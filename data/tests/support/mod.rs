//! Test support shared by the data layer's test binaries.

use std::io::Write as _;

/// Skips a test that cannot run on this machine (saying so on stderr), or fails it where
/// services are required: `CI` or `MAGI_REQUIRE_SERVICES` set (`scripts/test` sets it).
pub fn skip(test: &str, why: &str) {
    let required = ["CI", "MAGI_REQUIRE_SERVICES"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    assert!(
        !required,
        "{test} cannot run here ({why}), and CI or MAGI_REQUIRE_SERVICES is set"
    );
    // Straight to stderr, past the test harness's capture, so the skip shows in every run.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}
