//! Each failure `memory-monitor check` can meet, turned into what to do
//! about it (pure: text and plain values in, text out).

use crate::discovery::{Candidate, Closeness};
use crate::ebpf::EbpfError;
use crate::sampler::Mode;
use crate::store::PutCause;

/// The MALLOC_CONF that turns jemalloc heap profiling on.
pub const PROFILING_ON: &str = "prof:true,prof_active:true";

/// Scopes every alert needs.
pub const CHAT_SCOPE: &str = "chat:write";
/// Scope the chart in the alert's thread needs (SLACK_CHART=true).
pub const FILES_SCOPE: &str = "files:write";

/// Why no process is BINARY_NAME: the closest candidates, and the fix.
/// `others` counts the processes visible besides this one and the monitor.
pub fn target_missing(
    name: &str,
    candidates: &[Candidate],
    others: usize,
) -> (Vec<String>, String) {
    if others == 0 {
        return (
            vec!["no process is visible here but the monitor's own".into()],
            "the containers do not share a process namespace: set `shareProcessNamespace: true` \
             in the pod spec (deploy/*.yaml do), then restart the pod"
                .into(),
        );
    }
    let Some(best) = candidates.first() else {
        return (
            vec![format!(
                "{others} other process(es) visible; none has a comm sharing the first bytes of \
                 {name:?} or an executable named {name:?}"
            )],
            "set BINARY_NAME to the service's process name as /proc/<pid>/comm shows it \
             (`ps -o comm` in its container); is the service running?"
                .to_string(),
        );
    };
    let details = candidates
        .iter()
        .map(|c| {
            let why = match c.closeness {
                Closeness::ExeName => "its executable is named BINARY_NAME".to_string(),
                Closeness::Argv0Name => "its argv[0] names BINARY_NAME".to_string(),
                Closeness::CommPrefix(n) => format!("its comm shares {n} leading bytes"),
            };
            let exe = c.exe.as_deref().unwrap_or("unreadable");
            format!(
                "candidate: pid {} comm={:?} exe={exe} ({why})",
                c.id.pid, c.comm
            )
        })
        .collect();
    (
        details,
        format!(
            "set BINARY_NAME={} (BINARY_NAME must be the process's comm)",
            best.comm
        ),
    )
}

/// The fix when the target's executable or maps cannot be opened:
/// symbolization needs ptrace-read access (same UID, or CAP_SYS_PTRACE).
pub fn proc_fix(own_uid: u32, target_uid: u32) -> String {
    if own_uid == 0 {
        format!(
            "the monitor runs as root but the service as uid {target_uid}: add SYS_PTRACE to the \
             monitor's capabilities (the eBPF variant in deploy/ebpf.yaml does; docs/security.md)"
        )
    } else if own_uid != target_uid {
        format!(
            "run the monitor as the service's UID (procfs variant: runAsUser: {target_uid}, \
             docs/security.md), or use the eBPF variant (root with SYS_PTRACE)"
        )
    } else {
        "the monitor has the service's UID, yet the kernel refuses: the service may have made \
         itself non-dumpable (prctl PR_SET_DUMPABLE 0), or /proc is mounted with hidepid; \
         see docs/security.md"
            .into()
    }
}

/// Whether a dump reply's error says jemalloc profiling is off, in the
/// words of heap-dump-server or of the older demo target.
pub fn profiling_off(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("heap profiling is off")
        || m.contains("opt.prof is false")
        || m.contains("profiling is not enabled")
}

/// The fix for a failed `dump`, from the capture error's text.
pub fn dump_fix(message: &str) -> String {
    if profiling_off(message) {
        return format!(
            "set MALLOC_CONF={PROFILING_ON} in the service's container (_RJEM_MALLOC_CONF for a \
             prefixed jemalloc) and restart it: profiling must be on from process start"
        );
    }
    let m = message.to_ascii_lowercase();
    if m.contains("did not finish its reply") {
        "the service did not finish the dump within DUMP_READ_TIMEOUT: raise it, or see why the \
         service is slow to dump (docs/troubleshooting.md)"
            .into()
    } else if m.contains("exceeds the cap") {
        "raise DUMP_MAX_SIZE (and SPOOL_MAX_SIZE with it), or raise lg_prof_sample in MALLOC_CONF \
         for smaller profiles"
            .into()
    } else if m.contains("without replying") {
        "the service closed the connection without a word: it must answer `dump` with a gzipped \
         pprof (heap-dump-server does)"
            .into()
    } else if m.contains("not gzip") {
        "the service must answer `dump` with a gzipped pprof, and a failure with one line \
         `error: ...` (docs/protocol.md)"
            .into()
    } else {
        "see the error above; docs/troubleshooting.md lists the capture failures".into()
    }
}

/// The fix for a failed marker write to `s3://bucket/key`.
pub fn s3_fix(cause: PutCause, bucket: &str, key: &str) -> String {
    match cause {
        PutCause::NoCredentials => "no AWS credentials found: give the pod's service account an \
             IAM role (IRSA: eks.amazonaws.com/role-arn; deploy/README.md) or EKS pod identity"
            .into(),
        PutCause::BadCredentials => "the store refuses the credentials (unknown key, wrong secret \
             or expired token): check the role or the AWS_* keys"
            .into(),
        PutCause::AccessDenied => format!(
            "the role may not write there: its policy needs the s3:PutObject statement on \
             arn:aws:s3:::{bucket}/{} (deploy/iam-policy.json, with S3_PATH_PREFIX as in the \
             ConfigMap)",
            key_prefix_pattern(key)
        ),
        PutCause::NoSuchBucket => format!(
            "bucket {bucket:?} does not exist at this endpoint/region: check S3_BUCKET and \
             AWS_REGION (or AWS_ENDPOINT_URL)"
        ),
        PutCause::Unreachable => "the S3 endpoint cannot be reached: check AWS_ENDPOINT_URL / \
             AWS_REGION, DNS and the pod's egress (NetworkPolicy, proxy)"
            .into(),
        PutCause::Other => "see the store's answer above".into(),
    }
}

/// `prefix/*` for the IAM resource of a key `prefix/pod-check`.
fn key_prefix_pattern(key: &str) -> String {
    match key.rfind('/') {
        Some(i) => format!("{}*", &key[..=i]),
        None => "*".into(),
    }
}

/// The scopes the alerts need that `scopes` lacks (`chart`: SLACK_CHART).
pub fn missing_scopes(scopes: &[String], chart: bool) -> Vec<&'static str> {
    let mut needed = vec![CHAT_SCOPE];
    if chart {
        needed.push(FILES_SCOPE);
    }
    needed
        .into_iter()
        .filter(|s| !scopes.iter().any(|have| have == s))
        .collect()
}

/// The fix for missing scopes.
pub fn scopes_fix(missing: &[&str]) -> String {
    let mut fix = format!(
        "add {} to the Slack app's bot token scopes (OAuth & Permissions), reinstall the app and \
         use the new token",
        missing.join(" and ")
    );
    if missing.contains(&FILES_SCOPE) && !missing.contains(&CHAT_SCOPE) {
        fix.push_str("; or set SLACK_CHART=false to alert without the chart");
    }
    fix
}

/// The fix for a Slack error code from `auth.test`.
pub fn slack_fix(code: Option<&str>) -> String {
    match code {
        Some("invalid_auth" | "not_authed" | "token_revoked" | "account_inactive") => {
            "the token is not valid: put a current bot token (xoxb-...) in SLACK_API_TOKEN or \
             SLACK_API_TOKEN_FILE"
                .into()
        }
        Some(code) => {
            format!("Slack refused the token ({code}): see api.slack.com/methods/auth.test")
        }
        None => {
            "Slack cannot be reached: check SLACK_API_URL and the pod's egress to slack.com".into()
        }
    }
}

/// The fix when eBPF does not load in `mode`.
pub fn ebpf_fix(error: &EbpfError, mode: Mode) -> String {
    let what = match error {
        EbpfError::NotBuilt => "this binary was built without eBPF: use the release image",
        EbpfError::PermissionDenied { .. } => {
            "run the monitor as root with the capabilities BPF, PERFMON and SYS_PTRACE \
             (deploy/ebpf.yaml), and a seccomp profile allowing bpf(2) and perf_event_open(2)"
        }
        EbpfError::NoBtf { .. } => {
            "the node's kernel has no BTF (/sys/kernel/btf/vmlinux): use a node image with \
             CONFIG_DEBUG_INFO_BTF"
        }
        EbpfError::PerfEventsUnavailable { .. } => {
            "perf events are refused: check kernel.perf_event_paranoid and CAP_PERFMON"
        }
        _ => "see the error above and docs/ebpf.md",
    };
    match mode {
        Mode::Ebpf => format!("{what}; with MONITOR_MODE=ebpf the monitor refuses to start"),
        _ => format!(
            "{what}; meanwhile the monitor falls back to procfs mode (or set MONITOR_MODE=procfs \
             to choose it)"
        ),
    }
}

#[cfg(test)]
mod tests;
