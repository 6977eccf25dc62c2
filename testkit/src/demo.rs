//! The demo jemalloc target (examples/demo-target/) as a test part: spawn it,
//! talk to its heap-dump socket, make it spike or leak on demand, restart it,
//! and kill and reap it on drop.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::binaries::{copy_executable, demo_binary};

/// How long a command on the demo socket may take (a first dump symbolizes
/// the binary, which takes a few seconds in debug builds).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the demo may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// `--pattern`: steady, spikes or leak.
    pub pattern: String,
    /// `--base-mib`.
    pub base_mib: usize,
    /// Further arguments (`--spike-mib 64`, `--leak-mib-per-sec 2`, ...).
    pub extra_args: Vec<String>,
    /// `--socket-dir`; None gives the target a fresh temporary directory.
    pub socket_dir: Option<PathBuf>,
    /// Run a copy of the binary under this file name (the socket and the
    /// process name follow it), e.g. a name longer than the 15-byte comm.
    pub exe_name: Option<String>,
    /// MALLOC_CONF for the child; None removes it from the environment so the
    /// demo's built-in `malloc_conf` applies.
    pub malloc_conf: Option<String>,
    /// Run as this uid (and gid of the same number) instead of the test's
    /// user; needs root. Its directories are opened up to it.
    pub run_as: Option<u32>,
    /// Further environment variables for the child, e.g.
    /// `TOKIO_WORKER_THREADS` to give it that many runtime threads.
    pub env: Vec<(String, String)>,
    /// A memory cgroup directory the process joins before it runs (see
    /// [`crate::cgroup::TestCgroup`]), so all its memory is charged there.
    pub cgroup: Option<PathBuf>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            pattern: "steady".into(),
            base_mib: 16,
            extra_args: Vec::new(),
            socket_dir: None,
            exe_name: None,
            malloc_conf: None,
            run_as: None,
            env: Vec::new(),
            cgroup: None,
        }
    }
}

/// jemalloc counters from the demo's `stats` command, in bytes.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct DemoStats {
    /// stats.allocated
    pub allocated: u64,
    /// stats.active
    pub active: u64,
    /// stats.resident
    pub resident: u64,
    /// stats.mapped
    pub mapped: u64,
    /// stats.retained
    pub retained: u64,
}

/// One event from the demo's `events` command.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct DemoEvent {
    /// spike-start, spike-end or dump-request.
    pub kind: String,
    /// Wall-clock time, ns since the Unix epoch.
    pub unix_ns: u64,
}

/// A running demo target. Dropping it kills and reaps the process.
pub struct DemoTarget {
    opts: DemoOptions,
    child: Child,
    exe: PathBuf,
    name: String,
    socket_dir: PathBuf,
    log: PathBuf,
    /// Temporary directories (socket dir, renamed copy, logs) kept alive.
    _dirs: Vec<tempfile::TempDir>,
}

impl DemoTarget {
    /// Starts the demo and waits until its socket answers. Panics (with the
    /// demo's log) if it does not come up.
    pub fn spawn(opts: DemoOptions) -> DemoTarget {
        Self::try_spawn(opts).unwrap_or_else(|e| panic!("demo target did not start: {e:#}"))
    }

    /// Like [`DemoTarget::spawn`], returning the error.
    pub fn try_spawn(opts: DemoOptions) -> anyhow::Result<DemoTarget> {
        let built = demo_binary()?;
        let mut dirs = Vec::new();
        let work = tempfile::tempdir().context("creating the demo work dir")?;
        let (exe, name) = match &opts.exe_name {
            Some(name) => {
                let exe = work.path().join(name);
                copy_executable(&built, &exe)?;
                (exe, name.clone())
            }
            None => (built, "demo-target".to_string()),
        };
        let socket_dir = match &opts.socket_dir {
            Some(dir) => dir.clone(),
            None => {
                let dir = tempfile::tempdir().context("creating the demo socket dir")?;
                let path = dir.path().to_path_buf();
                dirs.push(dir);
                path
            }
        };
        let log = work.path().join("demo-target.log");
        if let Some(uid) = opts.run_as {
            open_to(uid, work.path(), &socket_dir)?;
        }
        dirs.push(work);
        let child = start(&opts, &exe, &socket_dir, &log)?;
        let mut target = DemoTarget {
            opts,
            child,
            exe,
            name,
            socket_dir,
            log,
            _dirs: dirs,
        };
        target.wait_ready()?;
        Ok(target)
    }

    /// The demo's pid.
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

    /// Sends one command line and returns the whole reply (bytes).
    pub fn command_bytes(&self, line: &str) -> anyhow::Result<Vec<u8>> {
        ask(&self.socket_path(), line)
    }

    /// Sends one command line and returns the reply as text. Panics on I/O errors.
    pub fn command(&self, line: &str) -> String {
        let reply = self.command_bytes(line).unwrap_or_else(|e| {
            panic!(
                "demo command {line:?} failed: {e:#}\n--- demo log ---\n{}",
                self.log()
            )
        });
        String::from_utf8_lossy(&reply).into_owned()
    }

    /// jemalloc counters.
    pub fn stats(&self) -> DemoStats {
        let reply = self.command("stats");
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("bad stats reply {reply:?}: {e}"))
    }

    /// Starts a spike of `mib` MiB held for `ms` ms after it is fully touched.
    pub fn spike(&self, mib: usize, ms: u64) {
        let reply = self.command(&format!("spike {mib} {ms}"));
        assert_eq!(reply, "ok\n", "spike command refused");
    }

    /// Leaks `mib` MiB now (returns once it is touched).
    pub fn leak(&self, mib: usize) {
        let reply = self.command(&format!("leak {mib}"));
        assert_eq!(reply, "ok\n", "leak command refused");
    }

    /// Events recorded so far.
    pub fn events(&self) -> Vec<DemoEvent> {
        let reply = self.command("events");
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("bad events reply {reply:?}: {e}"))
    }

    /// The demo's RssAnon in bytes, from /proc.
    pub fn rss_anon(&self) -> anyhow::Result<u64> {
        rss_anon(self.pid())
    }

    /// SIGKILLs and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `within` for it to exit by itself (an OOM kill, say) and
    /// reaps it; None if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if start.elapsed() > within {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERMs it and waits up to `within` for it to exit.
    pub fn terminate(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        if unsafe { libc::kill(self.pid(), libc::SIGTERM) } != 0 {
            bail!(
                "kill -TERM {}: {}",
                self.pid(),
                std::io::Error::last_os_error()
            );
        }
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > within {
                bail!("demo {} still running {within:?} after SIGTERM", self.pid());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The options the next [`Self::restart`] uses (say, without the
    /// cgroup a runtime removed).
    pub fn options_mut(&mut self) -> &mut DemoOptions {
        &mut self.opts
    }

    /// Kills it and starts a new process with the same options (new pid,
    /// same executable and socket).
    pub fn restart(&mut self) {
        self.kill();
        self.child = start(&self.opts, &self.exe, &self.socket_dir, &self.log)
            .unwrap_or_else(|e| panic!("restarting the demo: {e:#}"));
        self.wait_ready().unwrap_or_else(|e| panic!("{e:#}"));
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        let limit = crate::patience::stretch(START_TIMEOUT);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "demo exited with {status} before serving\n--- demo log ---\n{}",
                    self.log()
                );
            }
            if let Ok(reply) = self.command_bytes("stats")
                && reply.starts_with(b"{")
            {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!(
                    "demo socket {} not answering after {limit:?}\n--- demo log ---\n{}",
                    self.socket_path().display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DemoTarget {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends one command line to the heap-dump socket at `path` and returns the
/// whole reply (to end of file).
pub fn ask(path: &Path, line: &str) -> anyhow::Result<Vec<u8>> {
    let mut s =
        UnixStream::connect(path).with_context(|| format!("connecting to {}", path.display()))?;
    s.set_read_timeout(Some(crate::patience::stretch(COMMAND_TIMEOUT)))?;
    s.set_write_timeout(Some(crate::patience::stretch(COMMAND_TIMEOUT)))?;
    writeln!(s, "{line}").with_context(|| format!("sending {line:?} to {}", path.display()))?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)
        .with_context(|| format!("reading the reply to {line:?}"))?;
    Ok(reply)
}

/// Reads RssAnon (bytes) of `pid` from `/proc/<pid>/status`.
pub fn rss_anon(pid: i32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no RssAnon in {path}"))?;
    Ok(kib * 1024)
}

/// Spawns the demo with `opts`, its stderr appended to `log`.
fn start(opts: &DemoOptions, exe: &Path, socket_dir: &Path, log: &Path) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--pattern")
        .arg(&opts.pattern)
        .arg("--base-mib")
        .arg(opts.base_mib.to_string())
        .arg("--socket-dir")
        .arg(socket_dir)
        .args(&opts.extra_args)
        .env("RUST_LOG", "info")
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    match &opts.malloc_conf {
        Some(conf) => cmd.env("MALLOC_CONF", conf),
        None => cmd.env_remove("MALLOC_CONF"),
    };
    if let Some(dir) = &opts.cgroup {
        // Reclaim at the limit must not thrash the demo's own code instead
        // of killing it (see the demo's --lock-pages).
        cmd.arg("--lock-pages");
        crate::cgroup::enter_dir(dir, &mut cmd)?;
    }
    if let Some(uid) = opts.run_as {
        use std::os::unix::process::CommandExt;
        // std drops supplementary groups too when root sets a uid.
        cmd.uid(uid).gid(uid);
    }
    cmd.spawn()
        .with_context(|| format!("starting {}", exe.display()))
}

/// Lets `uid` run the demo copy in `work` and bind its socket in `socket_dir`
/// (temporary directories are 0700 and owned by the test's user).
fn open_to(uid: u32, work: &Path, socket_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("opening {} to uid {uid}", work.display()))?;
    std::os::unix::fs::chown(socket_dir, Some(uid), Some(uid))
        .with_context(|| format!("giving {} to uid {uid}", socket_dir.display()))?;
    Ok(())
}
