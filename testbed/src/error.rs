//! What can go wrong when a testbed is brought up, down, or looked at.

use crate::topology::TopologyError;

/// A testbed operation's failure, said so that the user knows what to do.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// Not root.
    #[error("magi testbed needs root: it creates network namespaces, veth pairs, bridges and qdiscs (run it with sudo)")]
    NotRoot,
    /// A testbed name that cannot be used.
    #[error("bad testbed name `{0}`: use 1 to 32 lowercase letters, digits and `-`, starting with a letter or digit")]
    BadName(String),
    /// The topology is not valid.
    #[error("{0}")]
    Topology(#[from] TopologyError),
    /// The address plan cannot be made.
    #[error("{0}")]
    Plan(String),
    /// A topology asks for something this machine cannot emulate.
    #[error("{0}")]
    Unsupported(String),
    /// A testbed of that name exists already.
    #[error("testbed `{0}` is already up; bring it down first with `magi testbed down {0}`")]
    AlreadyUp(String),
    /// No testbed of that name.
    #[error("no testbed named `{0}` is up (see `magi testbed status`)")]
    NotUp(String),
    /// A tool (`ip`, `tc`, `nft`) failed.
    #[error("{program}: {message}")]
    Tool {
        /// The program.
        program: String,
        /// What it said.
        message: String,
    },
    /// The state file cannot be read or written.
    #[error("testbed state {path}: {message}")]
    State {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl TestbedError {
    /// The exit code for the command line: 2 for bad input, 3 for the machine's side.
    pub fn exit_code(&self) -> i32 {
        match self {
            TestbedError::BadName(_)
            | TestbedError::Topology(_)
            | TestbedError::Plan(_)
            | TestbedError::Unsupported(_)
            | TestbedError::AlreadyUp(_)
            | TestbedError::NotUp(_) => 2,
            TestbedError::NotRoot | TestbedError::Tool { .. } | TestbedError::State { .. } => 3,
        }
    }
}
