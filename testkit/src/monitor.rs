//! Runs the real `memory-monitor` binary with a given environment and
//! collects its log lines so tests can wait for what it says.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::garage::BUCKET;
use crate::logs::TICK;

/// A running monitor process.
pub struct Monitor {
    child: Mutex<Option<Child>>,
    pid: i32,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// The environment every test monitor gets besides the S3 variables: short
/// timeouts, its own spool, no metrics port unless asked.
pub fn base_env(binary: &str, socket_dir: &Path, spool_dir: &Path) -> HashMap<String, String> {
    [
        ("BINARY_NAME", binary.to_string()),
        ("CHECK_INTERVAL", "200ms".into()),
        ("HISTORY_WINDOW_SIZE", "5".into()),
        ("MEMORY_CHANGE_THRESHOLD", "16MiB".into()),
        ("INITIAL_DELAY", "300ms".into()),
        ("DUMP_COOLDOWN", "30s".into()),
        ("SPIKE_MULTIPLIER", "1.5".into()),
        ("S3_BUCKET", BUCKET.into()),
        ("S3_PATH_PREFIX", "it/".into()),
        ("POD_NAME", "pod-a".into()),
        ("HEAP_DUMP_SOCKET_DIR", socket_dir.display().to_string()),
        ("SPOOL_DIR", spool_dir.display().to_string()),
        ("DUMP_CONNECT_TIMEOUT", "5s".into()),
        ("DUMP_READ_TIMEOUT", "20s".into()),
        ("UPLOAD_RETRY_MAX_DELAY", "2s".into()),
        ("SHUTDOWN_TIMEOUT", "5s".into()),
        ("METRICS_ADDR", "off".into()),
        ("MONITOR_MODE", "procfs".into()),
        ("RUST_LOG", "info,monitor=debug".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The environment of a monitor that never reaches a store: [`base_env`]
/// with its socket and spool directories under `dir` and an S3 endpoint on
/// a closed loopback port. For what happens before any upload: target
/// discovery, start-up, probes.
pub fn storeless_env(binary: &str, dir: &Path) -> HashMap<String, String> {
    let mut env = base_env(binary, &dir.join("sock"), &dir.join("spool"));
    for (k, v) in [
        // Port 9 (discard) is closed on a test machine: uploads fail fast.
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("S3_FORCE_PATH_STYLE", "true"),
    ] {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

/// The value of `name=` in a log line (quotes trimmed), e.g. `rss_anon`.
pub fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!(" {name}=");
    let at = line.find(&needle)? + needle.len();
    Some(line[at..].split_whitespace().next()?.trim_matches('"'))
}

/// The monitor binary, started with RLIMIT_NOFILE at `soft` and `hard`;
/// this process keeps its own limit.
pub fn with_fd_limit(soft: u64, hard: u64) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(binary());
    let rlimit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: the closure runs between fork and exec and only calls
    // setrlimit, which is async-signal-safe, on a value it owns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Path of the monitor binary built for these tests (see
/// [`crate::binaries::monitor_binary`]).
pub fn binary() -> PathBuf {
    crate::binaries::monitor_binary()
}

impl Monitor {
    /// Starts the monitor with exactly `env` (plus PATH), stderr collected.
    pub fn start(env: &HashMap<String, String>) -> Monitor {
        Monitor::start_command(Command::new(binary()), env)
    }

    /// Starts `cmd` (the monitor binary, possibly wrapped by capsh or unshare)
    /// with exactly `env` (plus PATH).
    pub fn start_command(mut cmd: Command, env: &HashMap<String, String>) -> Monitor {
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start memory-monitor");
        let pid = child.id() as i32;
        let stderr = child.stderr.take().expect("stderr piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("MONITOR_LOG_ECHO").is_some() {
                    eprintln!("[monitor] {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        Monitor {
            child: Mutex::new(Some(child)),
            pid,
            lines,
            reader: Some(reader),
        }
    }

    /// PID of the monitor process.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Log lines containing every one of `needles`.
    pub fn matching(&self, needles: &[&str]) -> Vec<String> {
        self.logs()
            .into_iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .collect()
    }

    /// Waits until `count` lines contain every one of `needles`; panics with
    /// the whole log after `timeout`.
    pub fn wait_for(&self, needles: &[&str], count: usize, timeout: Duration) -> Vec<String> {
        let timeout = crate::patience::stretch(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.matching(needles);
            if found.len() >= count {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "monitor did not log {count} line(s) with {needles:?} within {timeout:?}; log:\n{}",
                    self.logs().join("\n")
                );
            }
            if let Some(status) = self.try_status() {
                panic!(
                    "monitor exited ({status}) while waiting for {needles:?}; log:\n{}",
                    self.logs().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The monitor's `tick` lines so far (one per sample), oldest first.
    pub fn ticks(&self) -> Vec<String> {
        self.matching(TICK)
    }

    /// Waits for `more` tick lines after those already logged; returns all.
    pub fn wait_for_ticks(&self, more: usize, timeout: Duration) -> Vec<String> {
        let seen = self.ticks().len();
        self.wait_for(TICK, seen + more, timeout)
    }

    /// SIGTERM, then waits up to `within` for the exit and asserts it was
    /// clean (status 0); panics with the log otherwise.
    pub fn stop(&mut self, within: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let Some(status) = self.wait(within) else {
            panic!(
                "still running {within:?} after SIGTERM; log:\n{}",
                self.logs().join("\n")
            );
        };
        assert!(
            status.success(),
            "{status:?} after SIGTERM; log:\n{}",
            self.logs().join("\n")
        );
        status
    }

    /// The exit status, if the process has exited.
    pub fn try_status(&self) -> Option<ExitStatus> {
        let mut guard = self.child.lock().unwrap();
        guard.as_mut()?.try_wait().ok().flatten()
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a PID we spawned; no memory is involved.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for the process to exit, up to `timeout`; kills it after that.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap().take()?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        status
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.kill();
    }
}
