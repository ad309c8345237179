//! The simulated cluster's nodes: a pod runner that does what the Deployment
//! controller, the kubelet, the endpoints controller and kube-proxy do, with real
//! processes on loopback. For every Deployment it sees in the API it keeps
//! `spec.replicas` pods of the current template (`Recreate`: the old pods are gone before
//! new ones start), runs each pod's container as a process of the image's binary with
//! its own loopback IP (`127.N.x.y`, N per runner, so every pod binds the ports its spec
//! names),
//! restarts processes that exit (with back-off), probes readiness, and writes Pod objects
//! and Deployment status back. Services' cluster IPs (the API server gives them on loopback) forward
//! to their ready pods.
//!
//! An image the runner does not know never starts (`ErrImagePull`), as a typo in an
//! image name behaves on a real cluster.

mod process;
mod proxy;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodSpec, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How the runner runs pods.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// Image → the binary its containers run (`command[0]` is the binary's name).
    pub images: BTreeMap<String, PathBuf>,
    /// Where each pod gets a directory (volumes, log).
    pub work_dir: PathBuf,
    /// Given as KUBECONFIG to pods that mount a service account token.
    pub kubeconfig: PathBuf,
    /// How long a terminating pod has between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// A pod as the runner keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub namespace: String,
    /// `namespace/name` of its Deployment.
    pub deployment: String,
    pub ip: IpAddr,
    pub ready: bool,
    pub running: bool,
    pub restarts: u32,
    pub log: PathBuf,
}

enum Command {
    /// kill -9 the pod's process (the kubelet restarts it).
    Kill(String),
    /// The pod goes (kill -9 and removed; its Deployment makes a new one).
    Delete(String),
}

/// The running pod runner; dropping it kills every pod.
pub struct PodRunner {
    pods: Arc<Mutex<Vec<PodInfo>>>,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
    stop: Arc<tokio::sync::Notify>,
}

impl PodRunner {
    pub fn start(client: kube::Client, options: RunnerOptions) -> PodRunner {
        let pods: Arc<Mutex<Vec<PodInfo>>> = Arc::default();
        let (commands, inbox) = mpsc::unbounded_channel();
        let stop = Arc::new(tokio::sync::Notify::new());
        // Each runner of the process gets its own pod range, 127.N.0.0/16 with N from 16
        // up, so clusters running side by side never give two pods one address.
        static RUNNERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let network = 16 + (RUNNERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 100) as u8;
        let mut runner = Runner {
            client,
            options,
            pods: Vec::new(),
            next_ip: 0,
            network,
            cluster_ips: BTreeMap::new(),
            ports: BTreeMap::new(),
            shared: pods.clone(),
            inbox,
            deployment_status: BTreeMap::new(),
        };
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = runner.tick().await {
                    tracing::debug!(error = %e, "pod runner tick");
                }
                tokio::select! {
                    _ = stopped.notified() => break,
                    _ = tokio::time::sleep(Duration::from_millis(150)) => {}
                }
            }
            runner.kill_all();
        });
        PodRunner {
            pods,
            commands,
            task,
            stop,
        }
    }

    /// Every pod now.
    pub fn pods(&self) -> Vec<PodInfo> {
        self.pods.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// kill -9 a pod's process, as a crash would.
    pub fn kill(&self, pod: &str) {
        let _ = self.commands.send(Command::Kill(pod.to_string()));
    }

    /// Deletes a pod (its Deployment replaces it), as a lost node would.
    pub fn delete(&self, pod: &str) {
        let _ = self.commands.send(Command::Delete(pod.to_string()));
    }

    /// The logs of the pods whose name starts with `prefix`, for a failing test.
    pub fn logs(&self, prefix: &str) -> String {
        let mut out = String::new();
        for pod in self.pods().iter().filter(|p| p.name.starts_with(prefix)) {
            let text = std::fs::read_to_string(&pod.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            out.push_str(&format!("--- {} ({}) ---\n", pod.name, pod.ip));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Kills every pod and stops.
    pub async fn shutdown(self) {
        self.stop.notify_one();
        let _ = (&mut { self.task }).await;
    }
}

struct RunningPod {
    info: PodInfo,
    hash: String,
    labels: BTreeMap<String, String>,
    spec: PodSpec,
    dir: PathBuf,
    child: Option<Child>,
    /// Unknown image: never starts.
    image_missing: bool,
    /// The exit code of the container's last run, once it has exited.
    last_exit: Option<i32>,
    next_start: Instant,
    terminating: Option<Instant>,
    last_probe: Instant,
    /// The API object was created.
    created: bool,
    reported: Option<serde_json::Value>,
}

struct Runner {
    client: kube::Client,
    options: RunnerOptions,
    pods: Vec<RunningPod>,
    next_ip: u32,
    /// The second octet of this runner's pod addresses.
    network: u8,
    /// `ns/svc` → its cluster IP.
    cluster_ips: BTreeMap<String, IpAddr>,
    /// `ns/svc` → port → listener.
    ports: BTreeMap<String, BTreeMap<u16, proxy::ServicePort>>,
    shared: Arc<Mutex<Vec<PodInfo>>>,
    inbox: mpsc::UnboundedReceiver<Command>,
    deployment_status: BTreeMap<String, serde_json::Value>,
}

impl Runner {
    async fn tick(&mut self) -> anyhow::Result<()> {
        while let Ok(command) = self.inbox.try_recv() {
            match command {
                Command::Kill(name) => {
                    if let Some(p) = self.pods.iter_mut().find(|p| p.info.name == name)
                        && let Some(child) = p.child.as_mut()
                    {
                        let _ = child.kill();
                    }
                }
                Command::Delete(name) => {
                    if let Some(p) = self.pods.iter_mut().find(|p| p.info.name == name) {
                        if let Some(child) = p.child.as_mut() {
                            let _ = child.kill();
                        }
                        p.terminating = Some(Instant::now() - self.options.grace);
                    }
                }
            }
        }
        let deployments: Vec<Deployment> = Api::<Deployment>::all(self.client.clone())
            .list(&ListParams::default())
            .await?
            .items;
        let services: Vec<Service> = Api::<Service>::all(self.client.clone())
            .list(&ListParams::default())
            .await?
            .items;
        self.services(&services).await;
        self.deployments(&deployments);
        self.processes().await;
        self.endpoints(&services);
        self.report(&deployments).await;
        if let Ok(mut shared) = self.shared.lock() {
            *shared = self.pods.iter().map(|p| p.info.clone()).collect();
        }
        Ok(())
    }

    /// Pods wanted by the Deployments: old templates terminated first, then the count.
    fn deployments(&mut self, deployments: &[Deployment]) {
        let mut seen = BTreeSet::new();
        for d in deployments {
            let key = format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any());
            seen.insert(key.clone());
            let spec = &d.spec;
            let hash = fnv(&serde_json::to_string(&spec.template).unwrap_or_default());
            let replicas = spec.replicas.unwrap_or(1).max(0) as usize;
            let mut old = false;
            for p in self.pods.iter_mut().filter(|p| p.info.deployment == key) {
                if p.hash != hash && p.terminating.is_none() {
                    terminate(p);
                }
                old |= p.hash != hash;
            }
            if old {
                continue; // Recreate: nothing new while an old pod remains.
            }
            let current: Vec<usize> = (0..self.pods.len())
                .filter(|&i| {
                    self.pods[i].info.deployment == key && self.pods[i].terminating.is_none()
                })
                .collect();
            for &i in current.iter().skip(replicas) {
                terminate(&mut self.pods[i]);
            }
            for _ in current.len()..replicas {
                let pod = self.new_pod(d, &key, &hash);
                self.pods.push(pod);
            }
        }
        for p in self.pods.iter_mut() {
            if !seen.contains(&p.info.deployment) && p.terminating.is_none() {
                terminate(p);
            }
        }
    }

    fn new_pod(&mut self, d: &Deployment, key: &str, hash: &str) -> RunningPod {
        self.next_ip += 1;
        let n = self.next_ip;
        let ip = IpAddr::from([127, self.network, (n / 250) as u8, (n % 250 + 1) as u8]);
        let template = d.spec.template.clone();
        let name = format!("{}-{}-{}", d.name_any(), &hash[..8], n);
        let namespace = d.namespace().unwrap_or_default();
        let dir = self.options.work_dir.join(&namespace).join(&name);
        let spec = template.spec.unwrap_or_default();
        let image = spec
            .containers
            .first()
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        RunningPod {
            info: PodInfo {
                name,
                namespace,
                deployment: key.to_string(),
                ip,
                ready: false,
                running: false,
                restarts: 0,
                log: dir.join("log"),
            },
            hash: hash.to_string(),
            labels: template.metadata.and_then(|m| m.labels).unwrap_or_default(),
            image_missing: !self.options.images.contains_key(&image),
            last_exit: None,
            spec,
            dir,
            child: None,
            next_start: Instant::now(),
            terminating: None,
            last_probe: Instant::now() - Duration::from_secs(60),
            created: false,
            reported: None,
        }
    }

    /// Starts, restarts, probes and reaps processes.
    async fn processes(&mut self) {
        let dns: BTreeMap<String, IpAddr> = self
            .cluster_ips
            .iter()
            .map(|(key, ip)| {
                let (ns, name) = key.split_once('/').unwrap_or(("", key));
                (format!("{name}.{ns}.svc"), *ip)
            })
            .collect();
        let now = Instant::now();
        for p in self.pods.iter_mut() {
            if let Some(since) = p.terminating {
                let exited = p
                    .child
                    .as_mut()
                    .is_none_or(|c| c.try_wait().ok().flatten().is_some());
                if !exited
                    && now.duration_since(since) >= self.options.grace
                    && let Some(child) = p.child.as_mut()
                {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                p.info.running = false;
                p.info.ready = false;
                continue;
            }
            if p.image_missing {
                continue;
            }
            let exited = match p.child.as_mut() {
                Some(c) => match c.try_wait() {
                    Ok(Some(status)) => {
                        // Killed by a signal: 128 + its number, as a container runtime says.
                        use std::os::unix::process::ExitStatusExt as _;
                        p.last_exit = status.code().or_else(|| status.signal().map(|s| 128 + s));
                        true
                    }
                    Ok(None) => false,
                    Err(_) => true,
                },
                None => true,
            };
            if exited {
                if p.child.take().is_some() {
                    p.info.restarts += 1;
                    // CrashLoopBackOff, shortened: 1 s, 2 s, 4 s… at most 10 s.
                    let backoff = Duration::from_secs(1 << p.info.restarts.min(3))
                        .min(Duration::from_secs(10));
                    p.next_start = now + backoff;
                    p.info.running = false;
                    p.info.ready = false;
                }
                if now >= p.next_start {
                    let _ = std::fs::create_dir_all(&p.dir);
                    let image = p
                        .spec
                        .containers
                        .first()
                        .and_then(|c| c.image.clone())
                        .unwrap_or_default();
                    let Some(binary) = self.options.images.get(&image) else {
                        continue;
                    };
                    let launch = process::Launch {
                        client: &self.client,
                        namespace: &p.info.namespace,
                        pod_name: &p.info.name,
                        pod_ip: p.info.ip,
                        spec: &p.spec,
                        binary,
                        dir: &p.dir,
                        dns: &dns,
                        kubeconfig: &self.options.kubeconfig,
                    };
                    match process::start(&launch).await {
                        Ok(child) => {
                            p.child = Some(child);
                            p.info.running = true;
                        }
                        Err(e) => {
                            tracing::warn!(pod = %p.info.name, error = %e, "pod could not start");
                            p.next_start = now + Duration::from_secs(1);
                        }
                    }
                }
                continue;
            }
            p.info.ready = probe(p).await;
        }
        // Terminated pods whose process is gone leave.
        let mut gone = Vec::new();
        self.pods.retain_mut(|p| {
            let done = p.terminating.is_some()
                && p.child
                    .as_mut()
                    .is_none_or(|c| c.try_wait().ok().flatten().is_some());
            if done {
                gone.push((p.info.namespace.clone(), p.info.name.clone(), p.created));
            }
            !done
        });
        for (namespace, name, created) in gone {
            if created {
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
                let _ = pods.delete(&name, &DeleteParams::default()).await;
            }
        }
    }

    /// Cluster IPs and their listeners for every Service port.
    async fn services(&mut self, services: &[Service]) {
        let mut seen = BTreeSet::new();
        for s in services {
            let key = format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
            seen.insert(key.clone());
            let Some(ip) = s
                .spec
                .as_ref()
                .and_then(|sp| sp.cluster_ip.as_deref())
                .and_then(|ip| ip.parse::<IpAddr>().ok())
            else {
                continue; // Headless, or no IP yet.
            };
            self.cluster_ips.insert(key.clone(), ip);
            let listeners = self.ports.entry(key).or_default();
            for port in s
                .spec
                .as_ref()
                .and_then(|sp| sp.ports.clone())
                .unwrap_or_default()
            {
                let number = port.port as u16;
                if let std::collections::btree_map::Entry::Vacant(slot) = listeners.entry(number) {
                    match proxy::listen(ip, number).await {
                        Ok(listener) => {
                            slot.insert(listener);
                        }
                        Err(e) => tracing::warn!(%ip, port = number, error = %e, "service port"),
                    }
                }
            }
        }
        self.ports.retain(|k, _| seen.contains(k));
        self.cluster_ips.retain(|k, _| seen.contains(k));
    }

    /// Each Service port's ready pods.
    fn endpoints(&mut self, services: &[Service]) {
        for s in services {
            let key = format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
            let Some(spec) = &s.spec else { continue };
            let selector = spec.selector.clone().unwrap_or_default();
            let Some(listeners) = self.ports.get(&key) else {
                continue;
            };
            for port in spec.ports.clone().unwrap_or_default() {
                let Some(listener) = listeners.get(&(port.port as u16)) else {
                    continue;
                };
                let targets: Vec<SocketAddr> = self
                    .pods
                    .iter()
                    .filter(|p| {
                        p.info.ready
                            && p.info.namespace == s.namespace().unwrap_or_default()
                            && !selector.is_empty()
                            && selector.iter().all(|(k, v)| p.labels.get(k) == Some(v))
                    })
                    .filter_map(|p| {
                        target_port(&p.spec, &port).map(|n| SocketAddr::new(p.info.ip, n))
                    })
                    .collect();
                if let Ok(mut e) = listener.endpoints.lock() {
                    *e = targets;
                }
            }
        }
    }

    /// Pod objects and Deployment status in the API, written when they change.
    async fn report(&mut self, deployments: &[Deployment]) {
        for p in self.pods.iter_mut().filter(|p| p.terminating.is_none()) {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &p.info.namespace);
            if !p.created {
                let owner = deployments
                    .iter()
                    .find(|d| {
                        format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any())
                            == p.info.deployment
                    })
                    .and_then(|d| d.controller_owner_ref(&()));
                let pod = json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": p.info.name, "namespace": p.info.namespace,
                                 "labels": p.labels, "ownerReferences": owner.map(|o| vec![o])},
                    "spec": p.spec,
                });
                if let Ok(pod) = serde_json::from_value::<Pod>(pod) {
                    p.created = pods.create(&PostParams::default(), &pod).await.is_ok();
                }
            }
            // What a kubelet says of a container that cannot run: the image cannot be
            // pulled, or it exited and waits out its back-off before the next start.
            let image = p.spec.containers.first().and_then(|c| c.image.clone());
            let waiting = if p.image_missing {
                Some(json!({"waiting": {"reason": "ErrImagePull",
                    "message": format!("pull access denied for {}: repository does not exist", image.unwrap_or_default())}}))
            } else if p.child.is_none() && p.last_exit.is_some() {
                Some(json!({"waiting": {"reason": "CrashLoopBackOff"}}))
            } else {
                None
            };
            let last_state = p.last_exit.map(|code| {
                json!({"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }}})
            });
            let status = json!({
                "phase": if p.info.running { "Running" } else { "Pending" },
                "podIP": p.info.ip.to_string(),
                "conditions": [{"type": "Ready", "status": if p.info.ready { "True" } else { "False" }}],
                "containerStatuses": [{"name": "strom", "ready": p.info.ready, "restartCount": p.info.restarts,
                                       "image": "", "imageID": "", "state": waiting.unwrap_or(json!({"running": {}})),
                                       "lastState": last_state.unwrap_or(json!({}))}],
            });
            if p.created && p.reported.as_ref() != Some(&status) {
                let patch = json!({"status": status});
                if pods
                    .patch_status(&p.info.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .is_ok()
                {
                    p.reported = Some(status);
                }
            }
        }
        for d in deployments {
            let key = format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any());
            let mine: Vec<&RunningPod> = self
                .pods
                .iter()
                .filter(|p| p.info.deployment == key)
                .collect();
            let hash = fnv(&serde_json::to_string(&d.spec.template).unwrap_or_default());
            let current = mine
                .iter()
                .filter(|p| p.hash == hash && p.terminating.is_none())
                .count();
            let ready = mine
                .iter()
                .filter(|p| p.hash == hash && p.info.ready)
                .count();
            let status = json!({
                "observedGeneration": d.metadata.generation,
                "replicas": mine.len(),
                "updatedReplicas": current,
                "readyReplicas": ready,
                "availableReplicas": ready,
            });
            if self.deployment_status.get(&key) != Some(&status) {
                let api: Api<Deployment> =
                    Api::namespaced(self.client.clone(), &d.namespace().unwrap_or_default());
                let patch = json!({"status": status});
                if api
                    .patch_status(
                        &d.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .is_ok()
                {
                    self.deployment_status.insert(key, status);
                }
            }
        }
    }

    fn kill_all(&mut self) {
        for p in self.pods.iter_mut() {
            if let Some(child) = p.child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Runner {
    /// A test that panics drops the runner with its runtime: no pod outlives it.
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// SIGTERM, as the kubelet stops a container; SIGKILL follows after the grace period.
fn terminate(p: &mut RunningPod) {
    p.terminating = Some(Instant::now());
    p.info.ready = false;
    if let Some(child) = &p.child {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
}

/// The container port a Service port targets (by number or by name).
fn target_port(spec: &PodSpec, port: &k8s_openapi::api::core::v1::ServicePort) -> Option<u16> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match &port.target_port {
        Some(IntOrString::Int(n)) => Some(*n as u16),
        Some(IntOrString::String(name)) => spec
            .containers
            .iter()
            .flat_map(|c| c.ports.clone().unwrap_or_default())
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port as u16),
        None => Some(port.port as u16),
    }
}

/// The readiness probe (an HTTP GET), at its period; no probe: ready while running.
async fn probe(p: &mut RunningPod) -> bool {
    let Some(container) = p.spec.containers.first() else {
        return false;
    };
    let Some(get) = container
        .readiness_probe
        .as_ref()
        .and_then(|r| r.http_get.clone())
    else {
        return true;
    };
    let period = container
        .readiness_probe
        .as_ref()
        .and_then(|r| r.period_seconds)
        .unwrap_or(10)
        .max(1) as u64;
    // Probed at most every half period here, so readiness follows quickly in tests.
    if p.last_probe.elapsed() < Duration::from_millis(period * 500) {
        return p.info.ready;
    }
    p.last_probe = Instant::now();
    let port = match &get.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => Some(*n as u16),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => container
            .ports
            .clone()
            .unwrap_or_default()
            .into_iter()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .map(|cp| cp.container_port as u16),
    };
    let Some(port) = port else { return false };
    let path = get.path.unwrap_or_else(|| "/".into());
    http_ok(SocketAddr::new(p.info.ip, port), &path).await
}

async fn http_ok(address: SocketAddr, path: &str) -> bool {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        let text = String::from_utf8_lossy(&head);
        Some(text.starts_with("HTTP/1.") && text[9..].starts_with('2'))
    };
    tokio::time::timeout(Duration::from_millis(500), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// FNV-1a, hex: a template's hash, the same in every run (pod names show it).
fn fnv(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
