//! Node agents of one process, started and stopped together: `magi-node --nodes N`, the
//! embedded default of `magi run` and the benchmark's fleets all run the same dispatcher
//! this way.

use magi_bus::NodeLink;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};

use crate::NodeConfig;

/// A set of running node agents sharing one stop signal.
pub struct Fleet {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Default for Fleet {
    fn default() -> Self {
        Self::new()
    }
}

impl Fleet {
    /// An empty fleet.
    pub fn new() -> Self {
        Fleet {
            stop: watch::channel(false).0,
            tasks: JoinSet::new(),
        }
    }

    /// Starts a node agent on `link`; it runs until [`Fleet::stop`] or until its link ends.
    pub fn spawn(&mut self, link: NodeLink, config: NodeConfig) {
        let mut stop = self.stop.subscribe();
        self.tasks.spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|stop| *stop).await;
            };
            crate::run(link, config, shutdown).await;
        });
    }

    /// How many node agents run.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Asks every node agent to stop: each stops its agents and says goodbye.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Waits for the next node agent to end; `None` once all have.
    pub async fn join_next(&mut self) -> Option<Result<(), JoinError>> {
        self.tasks.join_next().await
    }

    /// Stops every node agent and waits until all have ended.
    pub async fn shutdown(mut self) {
        self.stop();
        while self.tasks.join_next().await.is_some() {}
    }
}
