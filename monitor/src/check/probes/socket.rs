//! The checks that talk to the target's heap-dump socket: it exists and
//! this user may connect, its server passes the peer check, `dump` returns
//! a profile the monitor can read and symbolize, `stats` and `version`
//! answer. Each exchange goes through [`crate::capture`], as the monitor's.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use super::super::checklist::Line;
use super::super::fixes::dump_fix;
use super::super::socket::{self as judge, Access, Creds, SocketFile};
use super::bounded;
use crate::capture::{CaptureError, SocketDumper, StatsError, VersionReply};
use crate::config::Config;
use crate::procfs::ProcFs;
use crate::profile::decode_gz;
use crate::symbolize::{self, Binaries, MAX_INFLATION};
use crate::units::human_bytes;

/// Lines 5 to 9: socket, peer check, dump, stats, version, in that order.
pub async fn lines(config: &Config, pid: Option<i32>, timeout: Duration) -> Vec<Line> {
    let binary = &config.sampler.binary_name;
    let dumper = SocketDumper::new(binary, config.capture.clone());
    let path = dumper.socket_path().to_path_buf();
    let shown = path.display().to_string();
    let skip_rest = |why: &str| {
        ["peer check", "dump", "stats", "version"]
            .map(|what| Line::skip(format!("{what}: not checked ({why})")))
    };
    let file = match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_socket() => SocketFile {
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        },
        Ok(meta) => {
            let kind = if meta.file_type().is_symlink() {
                "symlink"
            } else {
                "file that is not a socket"
            };
            let mut lines = vec![Line::fail(format!("socket {shown} is a {kind}")).fix(
                "remove it: the service creates the socket itself at start (the monitor refuses \
                 anything else, symlinks included)",
            )];
            lines.extend(skip_rest("no socket"));
            return lines;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = &config.capture.socket_dir;
            let (details, fix) = judge::missing(binary, &dir.display().to_string(), &served(dir));
            let mut lines = vec![
                Line::fail(format!("socket {shown} does not exist"))
                    .details(details)
                    .fix(fix),
            ];
            lines.extend(skip_rest("no socket"));
            return lines;
        }
        Err(e) => {
            let mut lines = vec![Line::fail(format!("socket {shown} cannot be checked"))
                .detail(e.to_string())
                .fix("HEAP_DUMP_SOCKET_DIR must be searchable by the monitor's user (a volume both containers mount)")];
            lines.extend(skip_rest("no socket"));
            return lines;
        }
    };
    let creds = own_creds();
    let access = judge::access(file, &creds);
    let facts = [
        format!("socket: {}", judge::describe_file(file)),
        format!("this process: {}", creds.describe()),
    ];
    let exchange = bounded(timeout, dumper.version(pid)).await;
    let exchange = match exchange {
        Some(result) => result,
        None => Err(CaptureError::ConnectTimeout {
            path: path.clone(),
            after: timeout,
        }),
    };
    let mut lines = Vec::new();
    let (peer_line, version_line) = match exchange {
        Err(CaptureError::Connect { source, .. })
            if matches!(source.raw_os_error(), Some(libc::EACCES | libc::EPERM)) =>
        {
            lines.push(
                Line::fail(format!("socket {shown}: this user may not connect ({source})"))
                    .details(facts)
                    .fix(judge::denied_fix(file, &creds)),
            );
            lines.extend(skip_rest("cannot connect"));
            return lines;
        }
        Err(e @ (CaptureError::Connect { .. } | CaptureError::ConnectTimeout { .. })) => {
            lines.push(
                Line::fail(format!("socket {shown} exists but does not accept"))
                    .detail(e.to_string())
                    .fix("nobody serves it (a stale socket from an earlier run) or the service's \
                          accept loop is stuck: restart the service (heap-dump-server replaces a \
                          stale socket at start)"),
            );
            lines.extend(skip_rest("cannot connect"));
            return lines;
        }
        Err(CaptureError::PeerMismatch {
            expected, found, ..
        }) => (
            Line::fail(format!(
                "peer check: the socket is served by pid {found}, not by the target (pid {expected}) or its descendants"
            ))
            .fix("another process serves this name: BINARY_NAME must name the process that serves \
                  the socket (or its ancestor), and the name must be unique in the pod"),
            Line::skip("version: not checked (peer check failed)"),
        ),
        Err(e) => (
            peer_passed(pid, None),
            Line::fail("version: the exchange failed")
                .detail(e.to_string())
                .fix("the service must answer each command within DUMP_READ_TIMEOUT and close (docs/protocol.md)"),
        ),
        Ok(exchange) => (peer_passed(pid, exchange.peer), version_line(exchange.reply)),
    };
    let mut socket_line = Line::pass(format!("socket {shown} exists and this user may connect"));
    match access {
        Access::Override => {
            socket_line = socket_line
                .details(facts)
                .detail("connected only thanks to CAP_DAC_OVERRIDE: without it (the eBPF variant drops it) the mode bits refuse");
        }
        Access::Denied => {
            socket_line = socket_line.details(facts).detail(
                "the mode bits refuse this user, yet the kernel allowed the connection (an ACL?)",
            );
        }
        Access::Owner | Access::Group | Access::Other => {
            socket_line = socket_line
                .detail(format!("as {access:?} ({})", judge::describe_file(file)).to_lowercase());
        }
    }
    lines.push(socket_line);
    let peer_failed = peer_line.mark == super::super::checklist::Mark::Fail;
    lines.push(peer_line);
    if peer_failed {
        lines.extend(skip_rest("peer check failed").into_iter().skip(1).take(2));
    } else {
        lines.push(dump(config, &dumper, pid, timeout).await);
        lines.push(stats(&dumper, pid, timeout).await);
    }
    lines.push(version_line);
    lines
}

/// The `heap_dump_*.sock` file names in `dir`, sorted.
fn served(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| judge::served_name(n).is_some())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn peer_passed(pid: Option<i32>, peer: Option<i32>) -> Line {
    match (pid, peer) {
        (Some(target), Some(peer)) if peer == target => Line::pass(format!(
            "peer check: the socket is served by the target (pid {peer})"
        )),
        (Some(target), Some(peer)) => Line::pass(format!(
            "peer check: the socket is served by pid {peer}, a descendant of the target (pid {target})"
        )),
        (Some(_), None) => Line::pass("peer check passed"),
        (None, _) => Line::skip("peer check: not checked (no target found)"),
    }
}

fn version_line(reply: VersionReply) -> Line {
    match reply {
        VersionReply::Protocol { protocol, server } => Line::pass(format!(
            "version: heap-dump-protocol {protocol}{}",
            if server.is_empty() {
                String::new()
            } else {
                format!(" ({server})")
            }
        )),
        VersionReply::Unsupported(reply) => Line::skip(format!(
            "version: the server predates the `version` command (it answered: {reply})"
        ))
        .detail("fine: dump and stats are what the monitor uses; heap-dump-server answers it"),
        VersionReply::Malformed(why) => Line::skip("version: not understood").detail(why),
    }
}

/// Line 7: `dump` decoded, and symbolized or symbolizable.
async fn dump(config: &Config, dumper: &SocketDumper, pid: Option<i32>, timeout: Duration) -> Line {
    let Some(pid) = pid else {
        return Line::skip("dump: not checked (no target found)");
    };
    // Opened at capture time, as the monitor does.
    let binaries = tokio::task::spawn_blocking(move || Binaries::open(&ProcFs::default(), pid));
    let reply = bounded(timeout, dumper.dump(Some(pid))).await;
    let binaries = binaries.await.ok();
    let gz = match reply {
        Some(Ok(gz)) => gz,
        Some(Err(e)) => {
            let message = e.to_string();
            let mut line = Line::fail("dump: the service did not return a profile");
            // The service's own words first: its one-line `error: ...`.
            if let CaptureError::NotGzip { as_text, .. } = &e
                && let Some(said) = as_text.strip_prefix("; as text: ")
            {
                line = line.detail(format!("the service answered: {}", said.trim_matches('"')));
            }
            return line.detail(message.clone()).fix(dump_fix(&message));
        }
        None => {
            return Line::fail(format!("dump: no reply within {timeout:?}"))
                .fix("the service is slow to dump: raise DUMP_READ_TIMEOUT (and check --timeout)");
        }
    };
    let settings = config.uploader.symbolize;
    let max = config.capture.max_bytes.saturating_mul(MAX_INFLATION);
    let judged = tokio::task::spawn_blocking(move || judge_profile(&gz, binaries, settings, max));
    match judged.await {
        Ok(line) => line,
        Err(e) => Line::fail(format!("dump: judging the profile failed: {e}")),
    }
}

/// Decodes the dump and says what it holds (blocking: symbolizing reads
/// the binaries).
fn judge_profile(
    gz: &[u8],
    binaries: Option<Binaries>,
    settings: symbolize::SymbolizeSettings,
    max_inflated: u64,
) -> Line {
    let mut profile = match decode_gz(gz, max_inflated) {
        Ok(p) => p,
        Err(e) => {
            return Line::fail("dump: the reply is gzip but not a valid pprof")
                .detail(e.to_string())
                .fix("the service must answer `dump` with jemalloc_pprof's gzipped pprof (heap-dump-server does)");
        }
    };
    let types: Vec<String> = profile
        .sample_type
        .iter()
        .map(|t| format!("{}/{}", profile.string(t.r#type), profile.string(t.unit)))
        .collect();
    let samples = profile.sample.len();
    let head = format!(
        "dump: valid gzipped pprof, {} gzipped, {samples} sample{}, sample types {}",
        human_bytes(gz.len() as u64),
        if samples == 1 { "" } else { "s" },
        types.join(", ")
    );
    if samples == 0 {
        // A small heap may hold no sample yet (one per 2^lg_prof_sample
        // bytes on average), so this alone is no failure.
        return Line::pass(head).detail(
            "no samples: the heap is below jemalloc's sampling interval, or profiling is enabled \
             but not active (MALLOC_CONF=prof:true,prof_active:true)",
        );
    }
    let named = profile
        .location
        .iter()
        .filter(|l| !l.line.is_empty())
        .count();
    if named == profile.location.len() {
        return Line::pass(head).detail("symbolized by the service");
    }
    if !settings.enabled {
        return Line::pass(head)
            .detail("unsymbolized, and SYMBOLIZE=false: dumps are stored with addresses only");
    }
    let Some(binaries) = binaries else {
        return Line::fail(format!("{head}; unsymbolized"))
            .fix("the target's binaries could not be opened: see the /proc line");
    };
    let mut report = symbolize::symbolize(&mut profile, &binaries);
    report.opening = binaries.problems.clone();
    if report.symbolized > 0 {
        Line::pass(head).detail(format!("symbolizable: {}", report.summary()))
    } else {
        Line::fail(format!("{head}; not symbolizable"))
            .detail(report.summary())
            .fix("the monitor must open the target's binaries: see the /proc line's fix (docs/symbolize.md)")
    }
}

/// Line 8: `stats` answers with jemalloc's counters.
async fn stats(dumper: &SocketDumper, pid: Option<i32>, timeout: Duration) -> Line {
    match bounded(timeout, dumper.stats(pid)).await {
        Some(Ok(s)) => Line::pass(format!(
            "stats: allocated {}, resident {}",
            human_bytes(s.allocated),
            human_bytes(s.resident)
        )),
        Some(Err(e @ StatsError::Unsupported { .. })) => Line::skip("stats: not served")
            .detail(e.to_string())
            .detail("the alerts go out without jemalloc's verdict (allocated vs resident); heap-dump-server serves it"),
        Some(Err(e)) => Line::fail("stats: no counters")
            .detail(e.to_string())
            .fix("the service must answer `stats` with jemalloc's counters as one JSON object (docs/protocol.md)"),
        None => Line::fail(format!("stats: no reply within {timeout:?}"))
            .fix("the service's socket is stuck: restart it"),
    }
}

/// This process's ids and whether it overrides file permissions.
fn own_creds() -> Creds {
    // SAFETY: these calls only read the process's credentials; getgroups
    // writes at most `n` entries into a buffer of that size.
    let (uid, gid, groups) = unsafe {
        let n = libc::getgroups(0, std::ptr::null_mut());
        let mut groups = vec![0; usize::try_from(n).unwrap_or(0)];
        let got = libc::getgroups(n.max(0), groups.as_mut_ptr());
        groups.truncate(usize::try_from(got).unwrap_or(0));
        (libc::geteuid(), libc::getegid(), groups)
    };
    let caps = ProcFs::default().own_effective_caps().unwrap_or(0);
    Creds {
        uid,
        gid,
        groups,
        // CAP_DAC_OVERRIDE is capability 1.
        dac_override: caps & (1 << 1) != 0,
    }
}
