//! heap-dump-server's example service (`minimal-service`) as a test part: a
//! real jemalloc service built on the crate, run under a name of the test's
//! own with the environment deciding profiling; killed and reaped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::binaries::{copy_executable, minimal_service_binary};
use crate::demo::ask;

/// How long the service may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running example service. Dropping it kills and reaps the process.
pub struct ExampleService {
    child: Child,
    name: String,
    socket_dir: PathBuf,
    log: PathBuf,
    _dirs: Vec<tempfile::TempDir>,
}

impl ExampleService {
    /// Starts a copy named `name` serving in a fresh directory, with
    /// `MALLOC_CONF` set to `malloc_conf` (None: unset, so profiling is off),
    /// and waits until its socket answers `version`. Panics with its log
    /// if it does not come up.
    pub fn spawn(name: &str, malloc_conf: Option<&str>) -> ExampleService {
        Self::try_spawn(name, malloc_conf)
            .unwrap_or_else(|e| panic!("the example service did not start: {e:#}"))
    }

    fn try_spawn(name: &str, malloc_conf: Option<&str>) -> anyhow::Result<ExampleService> {
        let work = tempfile::tempdir().context("creating the service's work dir")?;
        let sockets = tempfile::tempdir().context("creating the service's socket dir")?;
        let exe = work.path().join(name);
        copy_executable(&minimal_service_binary()?, &exe)?;
        let log = work.path().join("service.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(&exe);
        cmd.arg(sockets.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        match malloc_conf {
            Some(conf) => cmd.env("MALLOC_CONF", conf),
            None => cmd.env_remove("MALLOC_CONF"),
        };
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let mut service = ExampleService {
            child,
            name: name.to_owned(),
            socket_dir: sockets.path().to_path_buf(),
            log,
            _dirs: vec![work, sockets],
        };
        service.wait_ready()?;
        Ok(service)
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The name it serves (its executable's file name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory holding its socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Its heap-dump socket.
    pub fn socket_path(&self) -> PathBuf {
        self.socket_dir
            .join(format!("heap_dump_{}.sock", self.name))
    }

    /// What it wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends one command line; the whole reply as text. Panics on I/O errors.
    pub fn command(&self, line: &str) -> String {
        let reply = ask(&self.socket_path(), line).unwrap_or_else(|e| {
            panic!(
                "command {line:?} failed: {e:#}\n--- service log ---\n{}",
                self.log()
            )
        });
        String::from_utf8_lossy(&reply).into_owned()
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        let limit = crate::patience::stretch(START_TIMEOUT);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "exited with {status} before serving\n--- log ---\n{}",
                    self.log()
                );
            }
            if ask(&self.socket_path(), "version")
                .is_ok_and(|reply| reply.starts_with(b"heap-dump-protocol "))
            {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!(
                    "socket {} not answering after {limit:?}\n--- log ---\n{}",
                    self.socket_path().display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ExampleService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
