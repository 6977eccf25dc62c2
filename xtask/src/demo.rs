//! `cargo xtask demo`: the whole product on local parts. Garage on loopback,
//! the demo jemalloc target leaking (plus one short spike), the monitor with
//! short intervals; prints the monitor's log and the objects as they land.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use crate::{cargo, run, target_dir};

/// Options of `cargo xtask demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

const BUCKET: &str = "heap-dumps";

/// Kills a child process when dropped, so Ctrl-C or an error leaves nothing behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run_demo(args: &DemoArgs, ebpf: bool) -> Result<()> {
    let features: &[&str] = if ebpf {
        &[]
    } else {
        &["--no-default-features"]
    };
    run(cargo()
        .args([
            "build",
            "-p",
            "monitor",
            "--bin",
            "memory-monitor",
            "--example",
            "demo-target",
        ])
        .args(features))?;
    let bin = target_dir().join("debug");

    let dir = target_dir().join("demo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sock"))
        .with_context(|| format!("creating {}", dir.display()))?;

    eprintln!("==> starting Garage (S3-compatible store) on loopback");
    let garage = testkit::garage::Garage::start(&dir.join("garage"))?;
    garage.create_bucket(BUCKET)?;
    eprintln!("    endpoint {} bucket {BUCKET}", garage.endpoint());

    eprintln!("==> starting the demo target (jemalloc profiling on, leaking 4 MiB/s)");
    let target_log = std::fs::File::create(dir.join("demo-target.log"))?;
    let _target = Reaped(
        Command::new(bin.join("examples").join("demo-target"))
            .args([
                "--pattern",
                "leak",
                "--base-mib",
                "64",
                "--leak-mib-per-sec",
                "4",
            ])
            .arg("--socket-dir")
            .arg(dir.join("sock"))
            .env(
                "MALLOC_CONF",
                "prof:true,prof_active:true,lg_prof_sample:19,dirty_decay_ms:0,muzzy_decay_ms:0",
            )
            .stdout(Stdio::null())
            .stderr(target_log)
            .spawn()
            .context("cannot start the demo target")?,
    );

    eprintln!(
        "==> starting memory-monitor (1 s interval, 10-sample window, 16 MiB leak threshold)"
    );
    let mut monitor = Command::new(bin.join("memory-monitor"));
    monitor
        .envs(garage.s3_env())
        .env("BINARY_NAME", "demo-target")
        .env("CHECK_INTERVAL", "1s")
        .env("HISTORY_WINDOW_SIZE", "10")
        .env("MEMORY_CHANGE_THRESHOLD", "16MiB")
        .env("INITIAL_DELAY", "2s")
        .env("DUMP_COOLDOWN", "10s")
        .env("SPIKE_MULTIPLIER", "1.5")
        .env("S3_BUCKET", BUCKET)
        .env("S3_PATH_PREFIX", "demo/")
        .env("POD_NAME", "demo-pod")
        .env("HEAP_DUMP_SOCKET_DIR", dir.join("sock"))
        .env("SPOOL_DIR", dir.join("spool"))
        .env("METRICS_ADDR", "127.0.0.1:9464")
        .env("SHUTDOWN_TIMEOUT", "5s")
        .stderr(Stdio::inherit());
    let _monitor = Reaped(monitor.spawn().context("cannot start memory-monitor")?);

    let started = Instant::now();
    let mut spiked = false;
    let mut seen = 0;
    while started.elapsed() < Duration::from_secs(args.seconds) {
        std::thread::sleep(Duration::from_secs(2));
        if !spiked && started.elapsed() > Duration::from_secs(args.seconds / 2) {
            spiked = true;
            eprintln!("==> asking the demo target for a 300 ms spike of 512 MiB");
            if let Err(e) = command(
                &dir.join("sock").join("heap_dump_demo-target.sock"),
                "spike 512 300",
            ) {
                eprintln!("    spike request failed: {e:#}");
            }
        }
        let keys = list(&garage)?;
        if keys.len() != seen {
            seen = keys.len();
            eprintln!("==> bucket {BUCKET} now holds {seen} dump(s):");
            for (k, size) in &keys {
                eprintln!("    s3://{BUCKET}/{k}  ({size} bytes)");
            }
        }
    }
    let keys = list(&garage)?;
    eprintln!(
        "\n==> demo finished after {} s; {} dump(s) in s3://{BUCKET}/:",
        args.seconds,
        keys.len()
    );
    for (k, size) in &keys {
        eprintln!("    {k}  ({size} bytes)");
    }
    eprintln!("Logs: {}", dir.display());
    if keys.is_empty() {
        anyhow::bail!("no dump landed in the bucket; see the monitor log above");
    }
    Ok(())
}

/// Sends one command line to the demo target's socket and returns its answer.
fn command(socket: &Path, line: &str) -> Result<String> {
    let mut s =
        UnixStream::connect(socket).with_context(|| format!("connect {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    writeln!(s, "{line}")?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer)?;
    Ok(answer)
}

/// Keys and sizes in the demo bucket.
fn list(garage: &testkit::garage::Garage) -> Result<Vec<(String, i64)>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let creds = aws_sdk_s3::config::Credentials::new(
            garage.access_key_id(),
            garage.secret_access_key(),
            None,
            None,
            "xtask-demo",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url(garage.endpoint())
            .region(aws_sdk_s3::config::Region::new(garage.region().to_string()))
            .credentials_provider(creds)
            .force_path_style(true)
            .build();
        let client = aws_sdk_s3::Client::from_conf(config);
        let out = client
            .list_objects_v2()
            .bucket(BUCKET)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(out
            .contents()
            .iter()
            .map(|o| {
                (
                    o.key().unwrap_or_default().to_string(),
                    o.size().unwrap_or_default(),
                )
            })
            .collect())
    })
}
