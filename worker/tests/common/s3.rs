//! A real S3-compatible server for tests: moto's server (PyPI `moto[server]`), started on
//! a free loopback port. It is installed once into `~/.cache/strom/moto` when Python
//! cannot import it yet, so a fresh machine needs only `python3 -m pip`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
}

fn python_path() -> Option<PathBuf> {
    let importable = Command::new("python3")
        .args(["-c", "import moto.server"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if importable {
        return None;
    }
    let home = std::env::var_os("STROM_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/strom")))
        .unwrap_or_else(|| PathBuf::from(".strom-cache"));
    let target = home.join("moto");
    if !target.join("moto").exists() {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(&target)
            .arg("moto[server]")
            .status()
            .expect("python3 -m pip runs (the S3 tests need Python 3 with pip)");
        assert!(status.success(), "installing moto[server] failed");
    }
    Some(target)
}

impl S3Server {
    /// Starts the server and waits until it answers.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut command = Command::new("python3");
        command
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(path) = python_path() {
            command.env("PYTHONPATH", path);
        }
        let child = command.spawn().expect("moto's server starts");
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto's server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// Creates a bucket (moto takes unsigned requests).
    pub fn create_bucket(&self, name: &str) {
        let client = strom::cluster::client::RestClient::new(&self.endpoint).expect("a client");
        let (status, body) = client
            .raw(http::Method::PUT, &format!("/{name}"))
            .expect("the server answers");
        assert!(status.is_success(), "{status}: {body:?}");
    }

    /// Freezes the server (`SIGSTOP`): connections hang as when a store is unreachable.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
