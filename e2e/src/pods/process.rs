//! A pod's container as a local process, the way a kubelet would start it: the image's
//! binary, `command` + `args`, env from values, the downward API (`metadata.name`,
//! `metadata.namespace`, `status.podIP`), Secrets and ConfigMaps, `$(VAR)` expanded;
//! ConfigMap and emptyDir volumes as directories of the pod. Processes cannot mount, so a
//! mount path in an env value, an argument or a mounted file is replaced by the pod's
//! directory for it, and a Service's DNS name by its cluster IP (the cluster's DNS).

use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret};
use kube::Api;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Everything a pod's process needs from the cluster.
pub struct Launch<'a> {
    pub client: &'a kube::Client,
    pub namespace: &'a str,
    pub pod_name: &'a str,
    pub pod_ip: IpAddr,
    pub spec: &'a PodSpec,
    pub binary: &'a Path,
    pub dir: &'a Path,
    /// `<svc>.<ns>.svc` → cluster IP.
    pub dns: &'a BTreeMap<String, IpAddr>,
    /// Given to pods that mount a service account token.
    pub kubeconfig: &'a Path,
}

/// Prepares the pod's volumes (once per pod) and starts its first container.
pub async fn start(launch: &Launch<'_>) -> anyhow::Result<Child> {
    let container = launch
        .spec
        .containers
        .first()
        .ok_or_else(|| anyhow::anyhow!("the pod has no container"))?;
    let mounts = mount_dirs(launch, container);
    prepare_volumes(launch, &mounts).await?;
    let rewrite = |text: &str| rewrite(text, &mounts, launch.dns);
    let env = environment(launch, container, &rewrite).await?;
    let mut words: Vec<String> = container.command.clone().unwrap_or_default();
    words.extend(container.args.clone().unwrap_or_default());
    let words: Vec<String> = words.iter().map(|w| rewrite(&expand(w, &env))).collect();
    // `command[0]` is the image's binary.
    let args = words.get(1..).unwrap_or_default();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(launch.dir.join("log"))?;
    let mut command = Command::new(launch.binary);
    command
        .args(args)
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| k == "PATH" || k == "RUST_BACKTRACE"))
        .envs(&env)
        .current_dir(launch.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if launch.spec.automount_service_account_token.unwrap_or(true) {
        command.env("KUBECONFIG", launch.kubeconfig);
    }
    Ok(command.spawn()?)
}

/// Each volume mount of the container → the pod directory standing in for it.
fn mount_dirs(launch: &Launch<'_>, container: &Container) -> Vec<(String, PathBuf, String)> {
    container
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let dir = launch.dir.join("volumes").join(&m.name);
            (m.mount_path, dir, m.name)
        })
        .collect()
}

async fn prepare_volumes(
    launch: &Launch<'_>,
    mounts: &[(String, PathBuf, String)],
) -> anyhow::Result<()> {
    for (_, dir, volume) in mounts {
        std::fs::create_dir_all(dir)?;
        let Some(source) = launch
            .spec
            .volumes
            .as_ref()
            .and_then(|v| v.iter().find(|v| &v.name == volume))
        else {
            continue;
        };
        if let Some(cm) = &source.config_map {
            let maps: Api<ConfigMap> = Api::namespaced(launch.client.clone(), launch.namespace);
            let map = maps.get(&cm.name).await?;
            for (file, text) in map.data.unwrap_or_default() {
                std::fs::write(dir.join(file), rewrite(&text, mounts, launch.dns))?;
            }
        }
    }
    Ok(())
}

async fn environment(
    launch: &Launch<'_>,
    container: &Container,
    rewrite: &impl Fn(&str) -> String,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for from in container.env_from.clone().unwrap_or_default() {
        if let Some(secret) = from.secret_ref {
            let secrets: Api<Secret> = Api::namespaced(launch.client.clone(), launch.namespace);
            if let Some(s) = secrets.get_opt(&secret.name).await? {
                for (k, v) in s.data.unwrap_or_default() {
                    env.insert(k, String::from_utf8_lossy(&v.0).into_owned());
                }
                for (k, v) in s.string_data.unwrap_or_default() {
                    env.insert(k, v);
                }
            }
        }
        if let Some(map) = from.config_map_ref {
            let maps: Api<ConfigMap> = Api::namespaced(launch.client.clone(), launch.namespace);
            if let Some(m) = maps.get_opt(&map.name).await? {
                env.extend(m.data.unwrap_or_default());
            }
        }
    }
    for var in container.env.clone().unwrap_or_default() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => expand(v, &env),
            (None, Some(from)) => match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                Some("metadata.name") => launch.pod_name.to_string(),
                Some("metadata.namespace") => launch.namespace.to_string(),
                Some("status.podIP") => launch.pod_ip.to_string(),
                Some(other) => anyhow::bail!("env {}: fieldRef {other} is not simulated", var.name),
                None => match &from.secret_key_ref {
                    Some(key) => {
                        let secrets: Api<Secret> =
                            Api::namespaced(launch.client.clone(), launch.namespace);
                        let secret = secrets.get(&key.name).await?;
                        let bytes = secret
                            .data
                            .unwrap_or_default()
                            .get(&key.key)
                            .map(|b| b.0.clone())
                            .unwrap_or_default();
                        String::from_utf8_lossy(&bytes).into_owned()
                    }
                    None => String::new(),
                },
            },
            (None, None) => String::new(),
        };
        env.insert(var.name, rewrite(&value));
    }
    Ok(env)
}

/// `$(VAR)` references to variables defined before, as the kubelet expands them.
fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

/// Mount paths → the pod's directories; `<svc>.<ns>.svc[.cluster.local]` → cluster IPs.
fn rewrite(
    text: &str,
    mounts: &[(String, PathBuf, String)],
    dns: &BTreeMap<String, IpAddr>,
) -> String {
    let mut out = text.to_string();
    // Longest names first, so `x.ns.svc.cluster.local` is not cut to `x.ns.svc`.
    let mut names: Vec<(&String, &IpAddr)> = dns.iter().collect();
    names.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    for (name, ip) in names {
        out = out.replace(&format!("{name}.cluster.local"), &ip.to_string());
        out = out.replace(name.as_str(), &ip.to_string());
    }
    // In one pass (placeholders first), so a pod directory that itself lies under a
    // mount path (`/tmp`) is not rewritten again; longest paths first.
    let mut mounts: Vec<&(String, PathBuf, String)> = mounts.iter().collect();
    mounts.sort_by_key(|(path, _, _)| std::cmp::Reverse(path.len()));
    for (i, (path, _, _)) in mounts.iter().enumerate() {
        out = replace_path(&out, path, &format!("\u{0}{i}\u{0}"));
    }
    for (i, (_, dir, _)) in mounts.iter().enumerate() {
        out = out.replace(&format!("\u{0}{i}\u{0}"), &dir.display().to_string());
    }
    out
}

/// `text` with every occurrence of the absolute path `path` that stands on its own (not
/// inside a longer path like `/a/tmp` or `/tmpfoo`) replaced by `by`.
fn replace_path(text: &str, path: &str, by: &str) -> String {
    let path_char = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '-');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(path) {
        let before = rest[..at].chars().last().or_else(|| out.chars().last());
        let after = rest[at + path.len()..].chars().next();
        let alone = !before.is_some_and(path_char) && !after.is_some_and(path_char);
        out.push_str(&rest[..at]);
        out.push_str(if alone { by } else { path });
        rest = &rest[at + path.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_expand_and_names_and_mounts_are_mapped() {
        let env: BTreeMap<String, String> =
            [("POD_IP".to_string(), "127.0.1.4".to_string())].into();
        assert_eq!(expand("$(POD_IP):8081", &env), "127.0.1.4:8081");
        let dns: BTreeMap<String, IpAddr> = [(
            "fraud-master.prod.svc".to_string(),
            IpAddr::from([127, 2, 0, 1]),
        )]
        .into();
        let mounts = vec![
            (
                "/etc/strom".to_string(),
                PathBuf::from("/tmp/pod/volumes/config"),
                "config".to_string(),
            ),
            (
                "/tmp".to_string(),
                PathBuf::from("/tmp/pod/volumes/tmp"),
                "tmp".to_string(),
            ),
        ];
        assert_eq!(
            rewrite(
                "master = \"http://fraud-master.prod.svc:6123\"\nconfig=/etc/strom/strom.toml tmp=/tmp",
                &mounts,
                &dns
            ),
            "master = \"http://127.2.0.1:6123\"\nconfig=/tmp/pod/volumes/config/strom.toml tmp=/tmp/pod/volumes/tmp"
        );
        // Only the mount path itself, not a path that merely contains it.
        assert_eq!(
            rewrite(
                "file:///data/target/tmp/x /tmpfoo file:///tmp/y",
                &mounts,
                &dns
            ),
            "file:///data/target/tmp/x /tmpfoo file:///tmp/pod/volumes/tmp/y"
        );
    }
}
