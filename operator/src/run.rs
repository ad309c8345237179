//! `strom-operator run`: the operator process — leader election on a Lease (only the
//! leader reconciles; the other replicas stand by and take over when its Lease runs
//! out), the controller, and the HTTP endpoints `/metrics`, `/healthz`, `/readyz`.
//! The end-to-end tests start operators through `serve` too, against the simulated
//! cluster, so they run the very code a pod runs.

use crate::controller::{self, Settings};
use crate::metrics::Metrics;
use axum::Router;
use axum::routing::get;
use k8s_openapi::api::coordination::v1::Lease;
use std::net::SocketAddr;
use std::time::Duration;
use strom_lease::{ElectionConfig, LeaderElector, LeaseLock};
use tokio::sync::watch;

/// How an operator replica runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch one namespace; `None`: all.
    pub namespace: Option<String>,
    /// This replica (its pod name).
    pub identity: String,
    /// Elect a leader on this Lease (`namespace`, `name`); `None`: always lead (one replica).
    pub lease: Option<(String, String)>,
    pub election: ElectionConfig,
    /// Where `/metrics`, `/healthz`, `/readyz` are served; `None`: nowhere.
    pub metrics_bind: Option<SocketAddr>,
}

/// Runs the operator until `shutdown` resolves; a held Lease is released on the way out,
/// so a standby replica takes over at once.
pub async fn serve(
    client: kube::Client,
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let metrics = Metrics::default();
    let mut server = None;
    if let Some(bind) = options.metrics_bind {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| anyhow::anyhow!("--metrics-bind {bind}: {e}"))?;
        tracing::info!(address = %listener.local_addr()?, "metrics and health endpoints listening");
        let m = metrics.clone();
        let app = Router::new()
            .route("/metrics", get(move || async move { m.render() }))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(|| async { "ready" }));
        server = Some(AbortOnDrop(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })));
    }
    let settings = Settings {
        namespace: options.namespace.clone(),
        identity: options.identity.clone(),
    };
    let (stop_election, election_stopped) = tokio::sync::oneshot::channel::<()>();
    let (leader_tx, leader_rx) = watch::channel(false);
    // Tasks of this replica end with it, also when `serve` is dropped mid-way (a crash:
    // the Lease is then not released, and runs out).
    let election = AbortOnDrop(match &options.lease {
        Some((namespace, name)) => {
            let elector = LeaderElector::new(
                LeaseLock {
                    api: kube::Api::<Lease>::namespaced(client.clone(), namespace),
                    name: name.clone(),
                    identity: options.identity.clone(),
                },
                options.election,
            )
            .map_err(|e| anyhow::anyhow!("leader election: {e}"))?;
            tracing::info!(lease = %name, %namespace, identity = %options.identity, "standing for leader");
            tokio::spawn(async move {
                elector
                    .run(leader_tx, async {
                        let _ = election_stopped.await;
                    })
                    .await;
            })
        }
        None => {
            let _ = leader_tx.send(true);
            tokio::spawn(async move {
                let _ = election_stopped.await;
                drop(leader_tx);
            })
        }
    });
    controller::run(client, settings, leader_rx, metrics, shutdown).await;
    // Reconciling has stopped: only now may the Lease go to another replica.
    let _ = stop_election.send(());
    let mut election = election;
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut election.0).await;
    drop(server);
    Ok(())
}

/// A task that is aborted when its handle goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
