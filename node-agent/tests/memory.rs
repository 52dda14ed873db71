//! `release_large_blocks`: freed archive-sized blocks go back to the system even when small
//! allocations made between them stay (as a node agent's do). Its own test binary: the
//! allocator setting is process-wide.

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn freed_archive_sized_blocks_go_back_to_the_system() {
    magi_node::release_large_blocks();
    // Glibc raises its threshold to the largest block freed so far: one freed first.
    drop(vec![1u8; 1_400_000]);
    let before = rss_kib();
    let mut archives = Vec::new();
    let mut kept = Vec::new();
    for i in 0..200u8 {
        archives.push(vec![i; 1_400_000]);
        kept.push(Box::new([i; 256]));
    }
    let held = rss_kib();
    assert!(held > before + 200_000, "{before} → {held} KiB");
    drop(archives);
    let after = rss_kib();
    assert!(
        after < before + 20_000,
        "280 MB freed but resident: {before} KiB before, {held} held, {after} after"
    );
    assert_eq!(kept.len(), 200);
}
