//! demo-target: a real jemalloc-profiled Rust process that serves the
//! heap-dump socket protocol (docs/protocol.md) with the heap-dump-server
//! crate, plus commands of its own for tests.
//!
//! The crate binds `<socket-dir>/heap_dump_<name>.sock` (name defaults to the
//! file name of its own executable, so a copy renamed to a long name serves
//! the long name), checks profiling and answers the standard commands
//! (`dump`, `stats`, `version`; `dump` symbolized in the demo with
//! `--symbolized`); the demo runs the accept loop, one connection at a time,
//! one command line per connection, the reply followed by EOF:
//!
//! | command             | reply                                                        |
//! |---------------------|--------------------------------------------------------------|
//! | `spike <MiB> <ms>`  | `ok`; a spike of MiB is allocated and touched now (in the    |
//! |                     | background) and freed `ms` after it was fully touched        |
//! | `leak <MiB>`        | `ok` once that much has been allocated, touched and leaked   |
//! | `climb <MiB/s>`     | `ok`; from now on it leaks that many MiB per second, in     |
//! |                     | 10 ms steps, until it dies                                   |
//! | `events`            | JSON list of `{kind, unix_ns}` (spike-start, spike-end,      |
//! |                     | dump-request)                                                |
//! | `misbehave <how>`   | `ok`; from now on `dump` is answered badly, for fault tests: |
//! |                     | `hang` (no reply until the client hangs up), `trickle` (a    |
//! |                     | byte every 100 ms), `empty` (EOF at once), `garbage` (text   |
//! |                     | that is not gzip), `huge:<MiB>` (a valid gzip stream of that |
//! |                     | size), `foreign-build` (a real profile naming another build  |
//! |                     | ID); `none` restores real dumps                              |
//!
//! Memory patterns (`--pattern`): `steady` keeps `--base-mib`; `spikes` adds a
//! spike of `--spike-mib` for `--spike-ms` every `--spike-every-ms` (a fixed
//! period, no jitter, so runs are repeatable); `leak` leaks
//! `--leak-mib-per-sec`, in steps every `--leak-step-ms` (250 ms).
//!
//! Every allocation is touched page by page so it counts in RssAnon, and
//! jemalloc is configured (`dirty_decay_ms:0,muzzy_decay_ms:0`) to hand freed
//! pages back at once so a finished spike really leaves RssAnon. Profiling is
//! switched on by the `malloc_conf` symbol below even without `MALLOC_CONF`.
//! Its leaks go through `leak_through_distinctive_grower`, a name tests look
//! for in the stored profile. Before it serves, it takes one warm-up dump so
//! that, with `--symbolized`, the symbolizer's caches are already resident
//! and the first real dump does not look like a spike.

use std::ffi::c_char;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use heap_dump_server::{Options, Reply};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A C string pointer jemalloc can read; raw pointers are not `Sync`, and this
/// one only ever points at a `'static` literal.
#[repr(transparent)]
pub struct MallocConf(*const c_char);

// SAFETY: the pointer targets an immutable 'static C string literal.
unsafe impl Sync for MallocConf {}

/// jemalloc reads the `malloc_conf` symbol once at initialisation, before
/// `main` (its own definition is weak, this strong one wins at link time).
/// `MALLOC_CONF` from the environment is applied after it and so still
/// overrides any of these options.
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static malloc_conf: MallocConf = MallocConf(
    c"prof:true,prof_active:true,lg_prof_sample:19,dirty_decay_ms:0,muzzy_decay_ms:0".as_ptr(),
);

mod memory;
mod misbehave;
mod symbolized;

use memory::{EVENTS, allocate_touched, leak, leak_at, record, run_spike, start_pattern};

use misbehave::{MISBEHAVE, MISBEHAVE_LIMIT, Misbehave, misbehave};

const MIB: usize = 1024 * 1024;
/// Smallest page size on the platforms we run on; writing one byte per 4 KiB
/// faults in every page even where pages are larger.
const PAGE: usize = 4096;

/// Memory behaviour of the process between commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Pattern {
    /// Keep the base allocation and nothing else.
    Steady,
    /// Base allocation plus a periodic spike.
    Spikes,
    /// Base allocation plus a constant leak.
    Leak,
}

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "jemalloc-profiled demo process serving the heap-dump socket protocol")]
struct Args {
    /// Memory pattern to run.
    #[arg(long, value_enum, default_value_t = Pattern::Steady)]
    pattern: Pattern,
    /// MiB allocated and touched at start and kept for the whole run.
    #[arg(long, default_value_t = 32)]
    base_mib: usize,
    /// Size of each periodic spike (pattern spikes).
    #[arg(long, default_value_t = 256)]
    spike_mib: usize,
    /// How long each periodic spike is held, in ms (pattern spikes).
    #[arg(long, default_value_t = 300)]
    spike_ms: u64,
    /// Fixed period between spike starts, in ms (pattern spikes).
    #[arg(long, default_value_t = 10_000)]
    spike_every_ms: u64,
    /// Leak rate (pattern leak).
    #[arg(long, default_value_t = 1.0)]
    leak_mib_per_sec: f64,
    /// Time between two leak steps, in ms (pattern leak): shorter steps make
    /// a fast leak a climb rather than a few big jumps.
    #[arg(long, default_value_t = 250)]
    leak_step_ms: u64,
    /// Directory of the socket.
    #[arg(long, default_value = "/tmp")]
    socket_dir: PathBuf,
    /// Name in the socket file name; defaults to this executable's file name.
    #[arg(long)]
    name: Option<String>,
    /// Skip the start-up dump that loads the symbolizer's caches (tens of MiB
    /// of debug info, kept for the process's life). Without the warm-up the
    /// first `dump` makes RssAnon jump, which a monitor sees as a spike.
    #[arg(long)]
    no_warm_up: bool,
    /// Lock the pages mapped at start once touched (mlockall with
    /// MCL_CURRENT | MCL_ONFAULT; later heap stays purgeable), code
    /// included: in a memory cgroup at its limit, the kernel otherwise evicts
    /// the process's own code and reads it back, over and over, instead of
    /// OOM-killing it. Over 9p in an emulated VM that thrash lasted minutes.
    #[arg(long)]
    lock_pages: bool,
    /// Answer `dump` with a symbolized profile, resolved in this process
    /// (what jemalloc_pprof's `symbolize` feature does, tens of MiB of debug
    /// info loaded into the heap at the first dump). By default profiles
    /// carry addresses only and the monitor symbolizes them.
    #[arg(long)]
    symbolized: bool,
}

/// Whether `dump` answers symbolized profiles (`--symbolized`).
static SYMBOLIZED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The crate's answer to a standard command, on the blocking pool (a dump
/// writes and parses a file); with `--symbolized`, a profile resolved here.
async fn standard(command: String) -> Reply {
    let symbolize = SYMBOLIZED.load(std::sync::atomic::Ordering::Relaxed);
    let answered = tokio::task::spawn_blocking(move || match heap_dump_server::reply(&command) {
        Reply::Profile(gz) if symbolize => match symbolized::symbolize_here(&gz) {
            Ok(gz) => Reply::Profile(gz),
            Err(e) => Reply::Error(format!("symbolizing the profile: {e:#}")),
        },
        reply => reply,
    });
    answered
        .await
        .unwrap_or_else(|e| Reply::Error(format!("the reply task failed: {e}")))
}

/// A real profile (gzipped pprof), or why not.
async fn dump_pprof() -> anyhow::Result<Vec<u8>> {
    match standard("dump".into()).await {
        Reply::Profile(gz) => Ok(gz),
        other => bail!("{}", String::from_utf8_lossy(&other.into_bytes()).trim()),
    }
}

/// Parses and runs one command line; returns the reply bytes.
async fn handle(line: &str) -> Vec<u8> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let reply = match words.as_slice() {
        ["events"] => {
            let events = EVENTS.lock().unwrap_or_else(|p| p.into_inner()).clone();
            serde_json::to_string(&events).map_err(|e| e.to_string())
        }
        ["spike", mib, ms] => match (mib.parse::<usize>(), ms.parse::<u64>()) {
            (Ok(mib), Ok(ms)) => {
                std::thread::spawn(move || run_spike(mib, Duration::from_millis(ms)));
                Ok("ok".to_string())
            }
            _ => Err(format!(
                "bad spike arguments {mib:?} {ms:?}: want <MiB> <ms>"
            )),
        },
        ["leak", mib] => match mib.parse::<usize>() {
            Ok(mib) => tokio::task::spawn_blocking(move || leak(mib))
                .await
                .map(|()| "ok".to_string())
                .map_err(|e| format!("leak task failed: {e}")),
            Err(e) => Err(format!("bad leak argument {mib:?}: {e}")),
        },
        ["climb", rate] => match rate.parse::<f64>() {
            Ok(rate) if rate.is_finite() && rate > 0.0 => {
                leak_at(rate, std::time::Duration::from_millis(10));
                Ok("ok".to_string())
            }
            _ => Err(format!("bad climb argument {rate:?}: want MiB per second")),
        },
        ["misbehave", how] => {
            let mode = match *how {
                "none" => Some(Misbehave::None),
                "hang" => Some(Misbehave::Hang),
                "trickle" => Some(Misbehave::Trickle),
                "empty" => Some(Misbehave::Empty),
                "garbage" => Some(Misbehave::Garbage),
                "foreign-build" => Some(Misbehave::ForeignBuild),
                other => other
                    .strip_prefix("huge:")
                    .and_then(|mib| mib.parse().ok())
                    .map(Misbehave::Huge),
            };
            match mode {
                Some(mode) => {
                    *MISBEHAVE.lock().unwrap_or_else(|p| p.into_inner()) = mode;
                    info!(?mode, "dump requests will be answered this way");
                    Ok("ok".to_string())
                }
                None => Err(format!(
                    "bad misbehave argument {how:?}: want none, hang, trickle, empty, garbage, foreign-build or huge:<MiB>"
                )),
            }
        }
        // dump, stats, version, and the crate's error for anything else.
        _ => {
            if line == "dump" {
                record("dump-request");
            }
            return standard(line.to_owned()).await.into_bytes();
        }
    };
    match reply {
        Ok(text) => format!("{text}\n").into_bytes(),
        Err(e) => {
            warn!(command = line, error = %e, "command failed");
            format!("error: {e}\n").into_bytes()
        }
    }
}

async fn serve_one(stream: UnixStream, read_timeout: Duration) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    // A client that never sends its line must not block the next one forever.
    tokio::time::timeout(read_timeout, reader.read_line(&mut line))
        .await
        .with_context(|| format!("no command line within {read_timeout:?}"))?
        .context("reading the command line")?;
    let mode = *MISBEHAVE.lock().unwrap_or_else(|p| p.into_inner());
    if line.trim() == "dump" && mode != Misbehave::None {
        record("dump-request");
        info!(?mode, "answering a dump request badly, as asked");
        // Bounded, so a client that never hangs up cannot stall the demo.
        let _ =
            tokio::time::timeout(MISBEHAVE_LIMIT, misbehave(mode, &mut reader, &mut write)).await;
        return Ok(());
    }
    let reply = handle(line.trim()).await;
    write.write_all(&reply).await.context("writing the reply")?;
    write.shutdown().await.context("closing the connection")?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    if args.lock_pages {
        memory::lock_pages()?;
    }
    SYMBOLIZED.store(args.symbolized, std::sync::atomic::Ordering::Relaxed);

    let mut options = Options::new().dir(&args.socket_dir);
    if let Some(name) = &args.name {
        options = options.name(name);
    }
    // Stale socket replaced, mode set, profiling checked; dropping it removes
    // the socket. The accept loop is the demo's own (its extra commands).
    let socket = heap_dump_server::bind(&options)?;
    let path = socket.path().to_path_buf();
    let listener = socket.as_std().try_clone().context("sharing the socket")?;
    listener
        .set_nonblocking(true)
        .context("making the socket non-blocking")?;
    let listener = UnixListener::from_std(listener).context("registering the socket")?;

    let base = allocate_touched(args.base_mib);
    info!(
        mib = args.base_mib,
        pid = std::process::id(),
        "base allocated and touched"
    );
    // After the base block exists, so the dump has stacks to symbolize.
    if !args.no_warm_up {
        match dump_pprof().await {
            Ok(bytes) => info!(
                bytes = bytes.len(),
                "warm-up dump done (symbolizer caches loaded)"
            ),
            Err(e) => warn!(error = %format!("{e:#}"), "warm-up dump failed"),
        }
    }
    start_pattern(&args);
    info!(socket = %path.display(), pattern = ?args.pattern, "serving heap dumps");

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                // One connection at a time, like the production services.
                Ok((stream, _)) => if let Err(e) = serve_one(stream, options.get_read_timeout()).await {
                    warn!(error = %format!("{e:#}"), "connection failed");
                },
                Err(e) => warn!(error = %e, "accept failed"),
            },
            _ = term.recv() => { info!("SIGTERM: exiting"); break; }
            _ = int.recv() => { info!("SIGINT: exiting"); break; }
        }
    }
    drop(listener);
    drop(socket);
    drop(base);
    Ok(())
}
