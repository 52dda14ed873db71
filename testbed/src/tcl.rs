//! ns/Emulab `.tcl` topology files, evaluated unchanged by the real `tclsh`.
//!
//! The files are programs (`for`, `set`, arrays, `append`, `expr`), so the only faithful
//! reader is a Tcl interpreter. `ns.tcl` (compiled into this crate) stands in for ns-2's
//! `Simulator` and Emulab's `tb_compat.tcl`: it records what the file makes, with the line
//! that made it, and prints the topology as JSON, which [`RawTopology`] validates.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::topology::{RawTopology, Routing, Topology, TopologyError};

/// The Tcl library: `Simulator`, `tb_compat.tcl` and the JSON printer.
pub const LIBRARY: &str = include_str!("tcl/ns.tcl");

/// What `ns.tcl` prints when the file fails.
#[derive(Deserialize)]
struct TclFailure {
    error: String,
    line: u32,
}

/// Evaluates the `.tcl` file at `path` and validates the topology it makes.
pub fn read(path: &Path) -> Result<Topology, TopologyError> {
    let file = path.display().to_string();
    if !path.is_file() {
        return Err(TopologyError::at(&file, 0, "no such file"));
    }
    let json = evaluate(path).map_err(|m| TopologyError::at(&file, 0, m))?;
    if let Ok(failure) = serde_json::from_str::<TclFailure>(&json) {
        return Err(TopologyError::at(&file, failure.line, failure.error));
    }
    let raw: RawTopology = serde_json::from_str(&json).map_err(|e| {
        TopologyError::at(
            &file,
            0,
            format!("the Tcl stand-in printed something unexpected ({e})"),
        )
    })?;
    raw.validate(&file, Routing::None)
}

/// Runs `tclsh` on the library with the topology file as its argument; returns its output.
fn evaluate(path: &Path) -> Result<String, String> {
    // The library goes in on stdin (`/dev/stdin` as the script), so nothing is written to disk.
    let mut child = Command::new("tclsh")
        .arg("/dev/stdin")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot run tclsh ({e}); install Tcl (Debian: apt-get install tcl)")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(LIBRARY.as_bytes())
            .map_err(|e| format!("cannot feed tclsh: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("tclsh failed: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The JSON is the last line: a file may `puts` lines of its own before it.
    match stdout.lines().rev().find(|l| l.starts_with('{')) {
        Some(line) if out.status.success() => Ok(line.to_string()),
        _ => Err(format!(
            "tclsh stopped ({}) without a topology: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::SegmentKind;

    fn topology(text: &str) -> Result<Topology, TopologyError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tcl");
        std::fs::write(&path, text).unwrap();
        read(&path)
    }

    const HEAD: &str = "set ns [new Simulator]\nsource tb_compat.tcl\n";

    #[test]
    fn nodes_are_named_after_their_variables_as_on_emulab() {
        let t = topology(&format!(
            "{HEAD}set a [$ns node]\nfor {{set i 0}} {{$i < 2}} {{incr i}} {{\n set b($i) [$ns node]\n}}\n\
             set l [$ns duplex-link $a $b(1) 10Mb 0ms DropTail]\n$ns rtproto Static\n$ns run\n"
        ))
        .unwrap();
        let names: Vec<_> = t.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "b-0", "b-1"]);
        assert_eq!(t.segments[0].name, "l");
        assert_eq!(t.segments[0].nodes, [0, 2]);
        assert_eq!(t.segments[0].line, 7);
        assert_eq!(t.routing, Routing::Static);
    }

    #[test]
    fn a_lan_may_name_its_members_literally() {
        let t = topology(&format!(
            "{HEAD}set router [$ns node]\nset c [$ns node]\nset lan [$ns make-lan \"router $c\" 10Mb 0ms]\n"
        ))
        .unwrap();
        assert_eq!(t.segments[0].kind, SegmentKind::Lan);
        assert_eq!(t.segments[0].nodes, [0, 1]);
        assert_eq!(t.routing, Routing::None);
    }

    #[test]
    fn tcl_errors_name_the_line_of_the_topology_file() {
        let e = topology(&format!(
            "{HEAD}set a [$ns node]\n\nset l [$ns duplex-link $a $x 1Mb 0ms DropTail]\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("no such variable"), "{e}");
        let e = topology(&format!(
            "{HEAD}set a [$ns node]\n$ns duplex-link $a nobody 1Mb 0ms DropTail\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("`nobody` is not a node"), "{e}");
    }

    #[test]
    fn a_node_set_twice_into_one_variable_is_refused() {
        let e = topology(&format!(
            "{HEAD}for {{set i 0}} {{$i < 2}} {{incr i}} {{\n  set n [$ns node]\n}}\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("own variable"), "{e}");
    }

    #[test]
    fn bad_figures_name_the_line_of_the_link() {
        let e = topology(&format!(
            "{HEAD}set a [$ns node]\nset b [$ns node]\nset l [$ns duplex-link $a $b 10Mq 0ms DropTail]\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("bad bandwidth `10Mq`"), "{e}");
        let e = topology(&format!(
            "{HEAD}set a [$ns node]\nset b [$ns node]\nset l [$ns duplex-link $a $b 10Mb 0ms RED]\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("DropTail"), "{e}");
    }

    #[test]
    fn tb_settings_are_recorded_and_loss_is_read() {
        let t = topology(&format!(
            "{HEAD}set a [$ns node]\nset b [$ns node]\ntb-set-node-os $a Ubuntu-STD\ntb-set-hardware $a pc3000\n\
             set l [$ns duplex-link $a $b 10Mb 0ms DropTail]\ntb-set-link-loss $l 0.05\ntb-set-sync-server $a\n"
        ))
        .unwrap();
        assert_eq!(t.nodes[0].settings["os"], "Ubuntu-STD");
        assert_eq!(t.nodes[0].settings["hardware"], "pc3000");
        assert_eq!(t.segments[0].shape.loss, 0.05);
        let commands: Vec<_> = t.settings.iter().map(|s| s.command.as_str()).collect();
        assert_eq!(
            commands,
            [
                "tb-set-node-os",
                "tb-set-hardware",
                "tb-set-link-loss",
                "tb-set-sync-server"
            ]
        );
        assert_eq!(t.settings[3].line, 9);
    }

    #[test]
    fn unsupported_simulator_methods_are_named() {
        let e = topology(&format!("{HEAD}$ns at 1.0 \"start\"\n")).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("`at` is not supported"), "{e}");
    }

    #[test]
    fn a_file_that_prints_and_quotes_still_gives_its_topology() {
        let t = topology(&format!(
            "{HEAD}set a [$ns node]\nputs \"{{not json\"\narray set x {{1 2}}\nparray x\n\
             tb-set-node-startcmd $a \"echo \\\"hi\\\"\\ttab\"\n"
        ))
        .unwrap();
        assert_eq!(t.nodes[0].settings["startcmd"], "echo \"hi\"\ttab");
    }

    #[test]
    fn a_missing_file_is_said_plainly() {
        let e = read(Path::new("/nonexistent/t.tcl")).unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
    }
}
