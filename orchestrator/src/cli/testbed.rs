//! `magi testbed up|down|status`: a testbed on this machine, from a topology file (the
//! original ns `.tcl`, or YAML). A thin shell over `magi_testbed`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand};
use magi_proto::Object;
use magi_testbed::{Lab, Net, TestbedError};
use serde_json::json;

use crate::embedded::NodePlace;

const AFTER_HELP: &str = "\
Each node becomes a network namespace (`NAME.node`), each link a veth pair, each LAN a bridge
in the namespace `NAME._lan`; links are shaped to their bandwidth (htb), loss is nftables'
random drop, delay needs the kernel's sch_netem. Addresses come from 198.18.0.0/15 (--pool),
static routes are computed for every node, and names resolve through /etc/netns/*/hosts.
Nothing is routed out of the lab. Needs root. State: /run/magi-testbed/NAME.json.

Then: magi run --testbed NAME procedure.aal (agents in the namespaces, embedded bus), or,
with --control, magi run --broker URL --testbed NAME procedure.aal (a magi-node in every
namespace, reaching the broker over the control network).

Exit codes: 0 done, 2 bad topology, name or pool (the message says where), 3 the machine
refused (not root, a tool failed).";

/// Arguments of `magi testbed`.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct TestbedArgs {
    #[command(subcommand)]
    command: TestbedCommand,
}

#[derive(Subcommand, Debug)]
enum TestbedCommand {
    /// Build a testbed from a topology (.tcl as for DETERLab/Emulab, or YAML).
    Up {
        /// The topology file.
        topology: PathBuf,
        /// The testbed's name (default: the file's name, as `cs55-topology`).
        #[arg(long)]
        name: Option<String>,
        /// Where addresses come from; must not overlap the host's networks.
        #[arg(long, default_value = magi_testbed::plan::DEFAULT_POOL)]
        pool: String,
        /// Also a control network (from the pool's last sixteenth), so that `magi run
        /// --broker URL --testbed NAME` can start a `magi-node` in every namespace.
        #[arg(long)]
        control: bool,
    },
    /// Remove a testbed: namespaces, links, bridges, processes left in them, state.
    Down {
        /// The testbed's name.
        name: String,
    },
    /// Show testbeds, or one testbed's nodes, addresses, routes and link settings.
    Status {
        /// The testbed's name (default: a line for each testbed).
        name: Option<String>,
    },
}

/// Runs `magi testbed`; returns the exit code.
pub fn run(args: TestbedArgs) -> i32 {
    let result = match args.command {
        TestbedCommand::Up {
            topology,
            name,
            pool,
            control,
        } => up(&topology, name, &pool, control),
        TestbedCommand::Down { name } => {
            let started = Instant::now();
            magi_testbed::down(&name).map(|r| {
                println!(
                    "testbed {name} down in {:.2} s: {} namespaces removed, {} processes killed",
                    started.elapsed().as_secs_f64(),
                    r.namespaces,
                    r.killed
                );
            })
        }
        TestbedCommand::Status { name: Some(name) } => Lab::load(&name).map(|lab| {
            println!("{}", magi_testbed::status::describe(&lab));
        }),
        TestbedCommand::Status { name: None } => {
            let names = Lab::list();
            if names.is_empty() {
                println!("no testbed is up");
            }
            for name in names {
                match Lab::load(&name) {
                    Ok(lab) => println!("{}", magi_testbed::status::summary(&lab)),
                    Err(e) => println!("{name}: {e}"),
                }
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn up(
    topology: &Path,
    name: Option<String>,
    pool: &str,
    control: bool,
) -> Result<(), TestbedError> {
    let pool: Net = pool
        .parse()
        .map_err(|e| TestbedError::Plan(format!("--pool: {e}")))?;
    let name = name.unwrap_or_else(|| default_name(topology));
    let started = Instant::now();
    let topology = magi_testbed::read(topology)?;
    let lab = magi_testbed::up_with(&name, topology, pool, magi_testbed::UpOptions { control })?;
    let over_broker = match &lab.control {
        Some(c) => format!(
            "\nover RabbitMQ (a magi-node per namespace, over the control network {}): magi run --broker URL --testbed {name} PROCEDURE.aal",
            c.subnet
        ),
        None => String::new(),
    };
    println!(
        "testbed {name} up in {:.2} s\n{}\nrun a procedure across it: magi run --testbed {name} PROCEDURE.aal{over_broker}",
        started.elapsed().as_secs_f64(),
        magi_testbed::status::summary(&lab)
    );
    Ok(())
}

/// Where each of `nodes` runs on testbed `name` (inside its namespace, through
/// `ip netns exec`, with its experiment address), and the host map agents get (every node
/// of the testbed to its address). A node the testbed lacks is an error.
pub fn places(name: &str, nodes: &[String]) -> Result<(Vec<NodePlace>, Object), String> {
    let lab = whole(name, nodes)?;
    let address = |i: usize| lab.address(i).map(|a| a.to_string());
    let places = nodes
        .iter()
        .filter_map(|n| lab.topology.node_index(n))
        .map(|i| NodePlace {
            name: lab.topology.nodes[i].name.clone(),
            address: address(i).unwrap_or_else(|| "127.0.0.1".into()),
            command_prefix: ["ip", "netns", "exec", &lab.namespace(i)]
                .map(String::from)
                .to_vec(),
        })
        .collect();
    let hosts = (0..lab.topology.nodes.len())
        .filter_map(|i| Some((lab.topology.nodes[i].name.clone(), json!(address(i)?))))
        .collect();
    Ok((places, hosts))
}

/// Testbed `name`, checked to be whole and to have every one of `nodes`.
pub fn whole(name: &str, nodes: &[String]) -> Result<Lab, String> {
    if !magi_testbed::system::is_root() {
        return Err(TestbedError::NotRoot.to_string());
    }
    let lab = Lab::load(name).map_err(|e| e.to_string())?;
    let (found, expected) = magi_testbed::status::health(&lab);
    if !lab.complete || found != expected {
        return Err(format!(
            "testbed {name} is not whole ({found} of {expected} namespaces); `magi testbed down {name}` and up again"
        ));
    }
    let missing: Vec<&str> = nodes
        .iter()
        .filter(|n| lab.topology.node_index(n).is_none())
        .map(|n| n.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the procedure names node(s) testbed {name} does not have: {} (its topology is {})",
            missing.join(", "),
            lab.topology.source
        ));
    }
    Ok(lab)
}

/// The file's name as a testbed name: `cs55_topology.tcl` gives `cs55-topology`.
fn default_name(topology: &Path) -> String {
    let stem = topology
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(32)
        .collect();
    name.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_name_is_the_file_name_made_safe() {
        assert_eq!(
            default_name(Path::new("x/cs55_topology.tcl")),
            "cs55-topology"
        );
        assert_eq!(default_name(Path::new("Lab.yaml")), "lab");
    }
}
