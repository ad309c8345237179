//! The user journeys (`strom_e2e::journeys`) on the simulated cluster, as CI runs them:
//! the real operator (leader election included) against the in-memory API server, and
//! real `strom` masters and workers started by the pod runner for the Deployments the
//! operator makes. Each test is one journey on a cluster of its own.

use std::path::Path;
use strom_e2e::journeys::sim::{IMAGE, SimCluster, SimOptions, strom_binary};
use strom_e2e::journeys::{self, operators_needed};

async fn journey(name: &str) {
    // Not under /tmp, which the pod runner maps to each pod's own emptyDir.
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("e2e-{}-{name}", std::process::id()));
    let mut cluster = SimCluster::start(SimOptions {
        dir,
        operators: operators_needed(name),
        images: [(IMAGE.to_string(), strom_binary(true).expect("strom builds"))].into(),
        patience: 1.0,
    })
    .await
    .expect("the simulated cluster starts");
    let result = journeys::run(&mut cluster, name).await;
    cluster.shutdown().await;
    if let Err(e) = result {
        panic!("journey {name}: {e:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_upgrade_rescale_suspend_resume_and_delete_keep_the_output_exact() {
    journey("lifecycle").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_specs_and_bad_upgrades_never_stop_the_running_job_and_a_new_leader_finishes_an_upgrade()
 {
    journey("failures").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_master_takes_over_from_a_lost_leader_and_the_job_goes_on_exactly() {
    journey("failover").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn manual_periodic_and_final_savepoints_restarts_and_last_state_and_stateless_upgrades() {
    journey("modes").await;
}
