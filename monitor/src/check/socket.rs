//! What stands between this process and the heap-dump socket, judged from
//! the socket file's mode and owner against our own ids (pure): connecting
//! needs write permission on the socket, checked by the kernel as owner,
//! else group, else other. Root passes anyway when it holds
//! `CAP_DAC_OVERRIDE`, so trying alone would hide what the monitor without
//! that capability (the eBPF variant) meets; both are reported.

/// The socket file as `stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketFile {
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
}

/// Who this process is, for permission checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Holds `CAP_DAC_OVERRIDE` (file permission checks skipped).
    pub dac_override: bool,
}

impl Creds {
    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// `uid 0 gid 10001 groups 10001,2` for the report.
    pub fn describe(&self) -> String {
        let groups: Vec<String> = self.groups.iter().map(u32::to_string).collect();
        let groups = if groups.is_empty() {
            "none".to_string()
        } else {
            groups.join(",")
        };
        let cap = if self.dac_override {
            ", with CAP_DAC_OVERRIDE"
        } else {
            ""
        };
        format!("uid {} gid {} groups {groups}{cap}", self.uid, self.gid)
    }
}

/// Which permission bits let this process connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// As the socket's owner.
    Owner,
    /// Through the socket's group.
    Group,
    /// As anyone.
    Other,
    /// Only thanks to `CAP_DAC_OVERRIDE`: the mode bits alone refuse.
    Override,
    /// Refused.
    Denied,
}

/// What the mode bits give `creds` on `file` (write is what connect needs).
pub fn access(file: SocketFile, creds: &Creds) -> Access {
    let by_bits = if creds.uid == file.uid {
        (file.mode & 0o200 != 0).then_some(Access::Owner)
    } else if creds.in_group(file.gid) {
        (file.mode & 0o020 != 0).then_some(Access::Group)
    } else {
        (file.mode & 0o002 != 0).then_some(Access::Other)
    };
    match by_bits {
        Some(access) => access,
        None if creds.dac_override => Access::Override,
        None => Access::Denied,
    }
}

/// `mode 0600, owner uid 1000, group gid 1000` for the report.
pub fn describe_file(file: SocketFile) -> String {
    format!(
        "mode {:04o}, owner uid {}, group gid {}",
        file.mode, file.uid, file.gid
    )
}

/// The fix when the mode bits refuse `creds`, one step per line: the mode
/// the socket needs, then the user or group the monitor needs.
pub fn denied_fix(file: SocketFile, creds: &Creds) -> String {
    if creds.uid == file.uid {
        return format!(
            "the socket's mode {:04o} refuses even its owner: serve it with mode 0660 \
             (heap-dump-server's default)",
            file.mode
        );
    }
    let mut steps = Vec::new();
    if file.mode & 0o020 == 0 {
        steps.push(
            "serve the socket with mode 0660 (heap-dump-server's default; or umask 0007 before \
             bind)"
                .to_string(),
        );
    }
    if !creds.in_group(file.gid) {
        steps.push(format!(
            "run the monitor in the socket's group (eBPF variant: runAsGroup/fsGroup: {}), or as \
             its owner (procfs variant: runAsUser: {})",
            file.gid, file.uid
        ));
    }
    steps.push(
        "a service that cannot be changed: add DAC_OVERRIDE to the eBPF variant's capabilities \
         (docs/security.md)"
            .to_string(),
    );
    steps.join("\n")
}

/// The name a socket file serves: `heap_dump_foo.sock` → `foo`.
pub fn served_name(file_name: &str) -> Option<&str> {
    file_name
        .strip_prefix("heap_dump_")?
        .strip_suffix(".sock")
        .filter(|n| !n.is_empty())
}

/// The details and fix when `<dir>/heap_dump_<binary>.sock` is missing;
/// `present` are the file names of the `heap_dump_*.sock` in `dir`.
pub fn missing(binary: &str, dir: &str, present: &[String]) -> (Vec<String>, String) {
    let names: Vec<&str> = present.iter().filter_map(|f| served_name(f)).collect();
    match names.as_slice() {
        [] => (
            vec![format!("no heap_dump_*.sock at all in {dir}")],
            format!(
                "the service must serve {dir}/heap_dump_{binary}.sock (heap-dump-server does: \
                 docs/protocol.md) with HEAP_DUMP_SOCKET_DIR a volume shared by both containers; \
                 a service that is still starting serves it once it is up"
            ),
        ),
        [only] => (
            vec![format!("{dir} holds heap_dump_{only}.sock")],
            format!(
                "the service serves heap_dump_{only}.sock: set BINARY_NAME={only} (when that is \
                 its process name) or name the server {binary:?}"
            ),
        ),
        several => (
            vec![format!(
                "{dir} holds {}",
                several
                    .iter()
                    .map(|n| format!("heap_dump_{n}.sock"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )],
            format!(
                "set BINARY_NAME to the name the service serves (one of {}), or name the server \
                 {binary:?}",
                several.join(", ")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(uid: u32, gid: u32, groups: &[u32], dac_override: bool) -> Creds {
        Creds {
            uid,
            gid,
            groups: groups.to_vec(),
            dac_override,
        }
    }

    fn file(mode: u32, uid: u32, gid: u32) -> SocketFile {
        SocketFile { mode, uid, gid }
    }

    #[test]
    fn owner_then_group_then_other_as_the_kernel_checks() {
        let sock = file(0o660, 1000, 2000);
        assert_eq!(access(sock, &creds(1000, 1, &[], false)), Access::Owner);
        assert_eq!(access(sock, &creds(7, 2000, &[], false)), Access::Group);
        assert_eq!(access(sock, &creds(7, 1, &[3, 2000], false)), Access::Group);
        assert_eq!(access(sock, &creds(7, 1, &[], false)), Access::Denied);
        assert_eq!(
            access(file(0o666, 1, 1), &creds(7, 7, &[], false)),
            Access::Other
        );
        // The owner is judged by the owner bits alone, even if the group's allow.
        assert_eq!(
            access(file(0o070, 1000, 2000), &creds(1000, 2000, &[], false)),
            Access::Denied
        );
    }

    #[test]
    fn root_with_dac_override_passes_but_is_told_apart() {
        let sock = file(0o600, 1000, 1000);
        assert_eq!(access(sock, &creds(0, 0, &[], true)), Access::Override);
        // Root without the capability is an ordinary user.
        assert_eq!(access(sock, &creds(0, 0, &[], false)), Access::Denied);
        assert_eq!(access(sock, &creds(1000, 0, &[], true)), Access::Owner);
    }

    #[test]
    fn the_denied_fix_names_what_is_missing() {
        // Neither the mode nor the group: both steps.
        let fix = denied_fix(file(0o600, 1000, 2000), &creds(7, 7, &[], false));
        assert!(fix.contains("mode 0660"), "{fix}");
        assert!(fix.contains("runAsGroup/fsGroup: 2000"), "{fix}");
        assert!(fix.contains("runAsUser: 1000"), "{fix}");
        // In the group already: only the mode.
        let fix = denied_fix(file(0o600, 1000, 2000), &creds(7, 7, &[2000], false));
        assert!(
            fix.contains("mode 0660") && !fix.contains("runAsGroup"),
            "{fix}"
        );
        // Group-writable already: only the group.
        let fix = denied_fix(file(0o660, 1000, 2000), &creds(7, 7, &[], false));
        assert!(
            !fix.contains("mode 0660") && fix.contains("runAsGroup"),
            "{fix}"
        );
        // The owner refused by its own bits.
        let fix = denied_fix(file(0o060, 1000, 2000), &creds(1000, 7, &[], false));
        assert!(fix.contains("refuses even its owner"), "{fix}");
        assert_eq!(
            describe_file(file(0o755, 1, 2)),
            "mode 0755, owner uid 1, group gid 2"
        );
        assert_eq!(
            creds(0, 10001, &[10001, 2], true).describe(),
            "uid 0 gid 10001 groups 10001,2, with CAP_DAC_OVERRIDE"
        );
    }

    #[test]
    fn a_missing_socket_names_what_is_served_instead() {
        let (details, fix) = missing("api", "/tmp", &["heap_dump_api-v2.sock".into()]);
        assert_eq!(details, ["/tmp holds heap_dump_api-v2.sock"]);
        assert!(
            fix.contains("serves heap_dump_api-v2.sock: set BINARY_NAME=api-v2"),
            "{fix}"
        );
        assert!(fix.contains("name the server \"api\""), "{fix}");

        let (details, fix) = missing("api", "/tmp", &[]);
        assert!(details[0].contains("no heap_dump_*.sock"), "{details:?}");
        assert!(fix.contains("/tmp/heap_dump_api.sock"), "{fix}");

        let (details, fix) = missing(
            "api",
            "/tmp",
            &["heap_dump_a.sock".into(), "heap_dump_b.sock".into()],
        );
        assert!(details[0].contains("heap_dump_a.sock, heap_dump_b.sock"));
        assert!(fix.contains("one of a, b"), "{fix}");
    }

    #[test]
    fn served_names_come_from_the_protocol_file_name() {
        assert_eq!(served_name("heap_dump_foo.sock"), Some("foo"));
        assert_eq!(served_name("heap_dump_.sock"), None);
        assert_eq!(served_name("other.sock"), None);
    }
}
