//! kube-proxy, simulated: the API server gives each Service a cluster IP on loopback
//! (`127.N.x.y`, N per API server); the runner listens there, and a connection to `clusterIP:port` is forwarded to a ready pod behind the Service at the
//! moment it is made. A pod that stops being ready gets no new connections; the ones it
//! had break with it, as they would in a cluster.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Ready endpoints of one Service port, kept up to date by the pod runner.
pub type Endpoints = Arc<Mutex<Vec<SocketAddr>>>;

/// One listening Service port.
pub struct ServicePort {
    pub endpoints: Endpoints,
    task: JoinHandle<()>,
}

impl Drop for ServicePort {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens on `ip:port` and forwards every connection to one of `endpoints` (round robin).
pub async fn listen(ip: IpAddr, port: u16) -> std::io::Result<ServicePort> {
    let listener = TcpListener::bind((ip, port)).await?;
    let endpoints: Endpoints = Arc::default();
    let targets = endpoints.clone();
    let task = tokio::spawn(async move {
        let mut next = 0usize;
        loop {
            let Ok((inbound, _)) = listener.accept().await else {
                continue;
            };
            let target = {
                let list = targets.lock().map(|l| l.clone()).unwrap_or_default();
                if list.is_empty() {
                    None
                } else {
                    next = next.wrapping_add(1);
                    Some(list[next % list.len()])
                }
            };
            // No ready pod: the connection is refused, as kube-proxy rejects it.
            let Some(target) = target else {
                drop(inbound);
                continue;
            };
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let mut inbound = inbound;
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Ok(ServicePort { endpoints, task })
}
