//! The bus contract (`tests/contract/`) on the in-process bus.

mod common;
mod contract;

use std::sync::Arc;

use magi_bus::memory::MemoryBus;
use magi_bus::Bus;

fn bus() -> Arc<dyn Bus> {
    Arc::new(MemoryBus::new())
}

#[tokio::test]
async fn a_group_call_reaches_exactly_the_members_of_that_run() {
    let traits = contract::Traits {
        counts_group_receivers: true,
    };
    contract::a_group_call_reaches_exactly_the_members_of_that_run(bus(), traits).await
}

#[tokio::test]
async fn a_call_to_an_empty_group_is_reported_not_lost() {
    contract::a_call_to_an_empty_group_is_reported_not_lost(bus()).await
}

#[tokio::test]
async fn triggers_reach_only_their_runs_orchestrator_and_every_tap() {
    contract::triggers_reach_only_their_runs_orchestrator_and_every_tap(bus()).await
}

#[tokio::test]
async fn a_node_name_or_run_cannot_be_attached_twice() {
    // Clones of the in-process bus share its router: a second client of the same bus.
    let first = MemoryBus::new();
    let other: Arc<dyn Bus> = Arc::new(first.clone());
    contract::a_node_name_or_run_cannot_be_attached_twice(Arc::new(first), other).await
}

#[tokio::test]
async fn heartbeats_reach_every_run_and_the_last_one_detaches_the_node() {
    contract::heartbeats_reach_every_run_and_the_last_one_detaches_the_node(bus()).await
}
