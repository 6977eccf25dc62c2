//! A throw-away single-node [Garage](https://garagehq.deuxfleurs.fr/) S3 server
//! on loopback, for the demo, the integration tests and fault tests.
//!
//! Each [`Garage`] lives in its own directory with its own free ports, so
//! several can run side by side (tests start one each). The server is started
//! with `--single-node --default-access-key`, which makes Garage assign and
//! apply a one-node layout itself and create the access key we chose; that
//! keeps start-up well under a second.
//!
//! [`TestGarage`] adds a fresh bucket and an S3 client to look at what
//! landed, for tests; [`ensure_installed`] is `cargo xtask setup`'s install.

mod bucket;
mod config;
mod install;
mod server;

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub use bucket::{BUCKET, TestGarage};
pub use install::{ensure_installed, garage_binary};
use server::{PortHold, Ports, Server, free_ports, random_hex};

/// The Garage release whose CLI and config format this module speaks.
pub const GARAGE_VERSION: &str = "2.5.0";

/// Region Garage reports for its S3 API.
const REGION: &str = "garage";

/// How long a fresh or restarted server may take to answer its health check.
/// It is ready in a fraction of a second when idle; the bound is generous for
/// a 2-core machine that is also compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Start attempts when the free ports we picked were taken by someone else
/// before Garage bound them.
const START_ATTEMPTS: u32 = 5;

/// Garage's own environment variables; cleared for the children so a setting
/// in the caller's environment cannot point them at another cluster.
const GARAGE_ENV: &[&str] = &[
    "GARAGE_CONFIG_FILE",
    "GARAGE_RPC_HOST",
    "GARAGE_RPC_SECRET",
    "GARAGE_RPC_SECRET_FILE",
    "GARAGE_ADMIN_TOKEN",
    "GARAGE_ADMIN_TOKEN_FILE",
    "GARAGE_METRICS_TOKEN",
    "GARAGE_METRICS_TOKEN_FILE",
    "GARAGE_DEFAULT_BUCKET",
];

/// A single-node Garage server running as a child process. Dropping it kills
/// and reaps the server; the data directory stays.
#[derive(Debug)]
pub struct Garage {
    binary: PathBuf,
    dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    ports: Ports,
    access_key_id: String,
    secret_access_key: String,
    server: Option<Server>,
    /// The ports, held while the server is stopped ([`Garage::stop`]).
    held: Option<PortHold>,
}

impl Garage {
    /// Starts a fresh server with its config, metadata and data under `dir`
    /// (created if missing) and waits until it is ready to serve S3.
    pub fn start(dir: &Path) -> Result<Garage> {
        let binary = garage_binary()?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        let rpc_secret = random_hex(32)?;
        let admin_token = random_hex(24)?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            // Keep the listeners until the config is written, so two servers
            // starting at once in this process cannot be handed the same ports.
            let (listeners, ports) = free_ports()?;
            let mut garage = Garage {
                config_path: dir.join("garage.toml"),
                log_path: dir.join("garage.log"),
                binary: binary.clone(),
                dir: dir.clone(),
                ports,
                // Garage key ids are "GK" + 24 hex digits, secrets 64 hex digits.
                access_key_id: format!("GK{}", random_hex(12)?),
                secret_access_key: random_hex(32)?,
                server: None,
                held: None,
            };
            garage.write_config(&rpc_secret, &admin_token)?;
            drop(listeners);
            match garage.launch() {
                Ok(()) => return Ok(garage),
                Err(err) if garage.lost_port_race() => {
                    // Another process took a port between our probe and
                    // Garage's bind: start over from clean state and ports.
                    for sub in ["meta", "data"] {
                        let _ = fs::remove_dir_all(dir.join(sub));
                    }
                    last_error = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow::anyhow!("no start attempt was made"))
            .context(format!(
                "starting garage in {}: ports kept being taken",
                dir.display()
            )))
    }

    /// Creates `name` and gives this server's key read, write and owner rights
    /// on it.
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        self.cli(&["bucket", "create", name])
            .with_context(|| format!("creating bucket {name}"))?;
        self.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            name,
            "--key",
            &self.access_key_id,
        ])
        .with_context(|| format!("allowing key {} on bucket {name}", self.access_key_id))?;
        Ok(())
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    /// The S3 region Garage expects in signatures.
    pub fn region(&self) -> &str {
        REGION
    }

    /// The access key id with rights on buckets made by [`Garage::create_bucket`].
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret of [`Garage::access_key_id`].
    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    /// The server's log (stdout and stderr of every run, appended).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The directory holding config, metadata, data and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the server process is running (false after [`Garage::stop`] or
    /// if it died).
    pub fn is_running(&self) -> bool {
        self.server
            .as_ref()
            .is_some_and(|server| !server.is_finished())
    }

    /// Environment for a process (memory-monitor, aws CLI) that should upload
    /// to this server: endpoint, region, credentials, path-style addressing,
    /// checksums only when required (Garage rejects the SDK's default
    /// streaming checksums) and no lookups in `~/.aws` or instance metadata.
    pub fn s3_env(&self) -> Vec<(String, String)> {
        // An empty file rather than a missing one: the SDK warns about the latter.
        let no_file = self.dir.join("empty-aws-config");
        if !no_file.exists() {
            let _ = std::fs::write(&no_file, b"");
        }
        let no_file = no_file.display().to_string();
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
            // Blank means "none" to the SDK; overrides a token in our own env.
            ("AWS_SESSION_TOKEN", String::new()),
            (
                "AWS_REQUEST_CHECKSUM_CALCULATION",
                "when_required".to_owned(),
            ),
            (
                "AWS_RESPONSE_CHECKSUM_VALIDATION",
                "when_required".to_owned(),
            ),
            ("S3_FORCE_PATH_STYLE", "true".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_CONFIG_FILE", no_file.clone()),
            ("AWS_SHARED_CREDENTIALS_FILE", no_file),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// Kills the server (SIGKILL, like a crash) and reaps it; data is kept. A
    /// no-op when it is not running. Its ports stay held until
    /// [`Garage::restart`] (bound but not listening: clients are refused).
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
            // Until restart: no other test's server may take them meanwhile.
            self.held = Some(PortHold::take(self.ports));
        }
    }

    /// Stops the server if needed and starts it again on the same ports with
    /// the same data and key.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let deadline = Instant::now() + crate::patience::stretch(READY_TIMEOUT);
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                // The port may linger briefly (or be grabbed by another test);
                // our ports are fixed now, so wait for them.
                Err(_) if self.lost_port_race() && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(200));
                }
                Err(err) => return Err(err.context("restarting garage")),
            }
        }
    }

    /// Spawns the server and waits until its health check passes.
    fn launch(&mut self) -> Result<()> {
        // Given back to the server (a no-op at the first start).
        self.held = None;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let mut command = Command::new(&self.binary);
        command
            .arg("-c")
            .arg(&self.config_path)
            .args(["server", "--single-node", "--default-access-key"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", &self.access_key_id)
            .env("GARAGE_DEFAULT_SECRET_KEY", &self.secret_access_key)
            .env("RUST_LOG", "garage=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log file handle")?)
            .stderr(log);
        for name in GARAGE_ENV {
            command.env_remove(name);
        }
        let server = Server::spawn(command)
            .with_context(|| format!("spawning {} server", self.binary.display()))?;
        self.server = Some(server);
        let started = Instant::now();
        let limit = crate::patience::stretch(READY_TIMEOUT);
        loop {
            if !self.is_running() {
                let status = self.server.take().and_then(Server::stop);
                bail!(
                    "garage server exited during start-up ({}); log {}:\n{}",
                    status.map_or_else(|| "unknown status".to_owned(), |s| s.to_string()),
                    self.log_path.display(),
                    self.log_tail()
                );
            }
            if self.healthy() && self.serves_s3() {
                return Ok(());
            }
            if started.elapsed() > limit {
                self.stop();
                bail!(
                    "garage did not become healthy within {limit:?} on admin port {}; log {}:\n{}",
                    self.ports.admin,
                    self.log_path.display(),
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the admin API answers `/health` with 200 (layout applied,
    /// storage reachable).
    fn healthy(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.ports.admin));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
    }

    /// Whether the S3 API accepts connections: `/health` can pass a moment
    /// before its listener is up, and a client then meets "connection
    /// refused".
    fn serves_s3(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.ports.s3));
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    }

    /// Whether the last run failed because a port was already in use.
    fn lost_port_race(&self) -> bool {
        fs::read_to_string(&self.log_path)
            .is_ok_and(|log| log.contains("Address already in use") || log.contains("os error 98"))
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Runs an admin command against this server.
    fn cli(&self, args: &[&str]) -> Result<String> {
        let mut command = Command::new(&self.binary);
        command
            .arg("-c")
            .arg(&self.config_path)
            .args(args)
            .env("NO_COLOR", "1");
        for name in GARAGE_ENV {
            command.env_remove(name);
        }
        let output = command
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running garage {}", args.join(" ")))?;
        if !output.status.success() {
            bail!(
                "garage {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_creates_a_bucket_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut garage = Garage::start(dir.path()).unwrap();
        assert!(garage.is_running());
        assert!(garage.endpoint().starts_with("http://127.0.0.1:"));
        assert!(garage.access_key_id().starts_with("GK"));
        assert_eq!(garage.access_key_id().len(), 26);
        garage.create_bucket("testkit-test").unwrap();
        let info = garage.cli(&["bucket", "info", "testkit-test"]).unwrap();
        assert!(info.contains(garage.access_key_id()), "{info}");
        // Creating it twice is an error, not a silent success.
        assert!(garage.create_bucket("testkit-test").is_err());

        garage.stop();
        assert!(!garage.is_running());
        assert!(!garage.healthy());
        garage.restart().unwrap();
        // Same data: the bucket survived the restart.
        let info = garage.cli(&["bucket", "info", "testkit-test"]).unwrap();
        assert!(info.contains("testkit-test"), "{info}");

        let env = garage.s3_env();
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("AWS_ENDPOINT_URL"), Some(garage.endpoint().as_str()));
        assert_eq!(
            get("AWS_SECRET_ACCESS_KEY"),
            Some(garage.secret_access_key())
        );
        assert_eq!(
            get("AWS_REQUEST_CHECKSUM_CALCULATION"),
            Some("when_required")
        );
    }

    #[test]
    fn two_servers_run_side_by_side() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let one = thread::spawn({
            let dir = a.path().to_owned();
            move || Garage::start(&dir).unwrap()
        });
        let two = Garage::start(b.path()).unwrap();
        let one = one.join().unwrap();
        assert_ne!(one.endpoint(), two.endpoint());
        one.create_bucket("one").unwrap();
        two.create_bucket("two").unwrap();
    }

    #[test]
    fn dropping_kills_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let garage = Garage::start(dir.path()).unwrap();
        let admin = garage.ports.admin;
        drop(garage);
        let addr = SocketAddr::from(([127, 0, 0, 1], admin));
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    }
}
