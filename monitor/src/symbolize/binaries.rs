//! The target's executable and libraries, opened when a dump is captured.
//!
//! Opening at capture time keeps each file reachable through our own open
//! descriptor (`/proc/self/fd/<n>`), so a target that dies right after the
//! dump (the near-OOM dump, then the kill) can still be symbolized, and a
//! binary replaced on disk meanwhile is still the one that ran.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::maps::{ExecMapping, Identity, hex, parse_maps};
use crate::procfs::ProcFs;

/// At most this many distinct binaries are opened per dump (the executable
/// first); a service mapping more code files than this is rare.
pub const MAX_BINARIES: usize = 64;

/// Files larger than this are not opened (a mapped file is paged in only
/// where symbols are looked up, but its DWARF index grows with it).
pub const MAX_BINARY_SIZE: u64 = 2 << 30;

/// One opened binary.
#[derive(Debug)]
pub struct Binary {
    /// What it is: its path in the target and its build ID.
    pub identity: Identity,
    /// Kept open so the file outlives the target.
    file: File,
}

impl Binary {
    /// A path that reopens exactly this file, whatever happened to the
    /// original path or the target since: our own descriptor's.
    pub fn fd_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }

    /// Wraps a file opened by other means (tests, benchmarks), reading its
    /// build ID.
    pub fn from_file(path: impl Into<String>, file: File) -> Binary {
        let mut binary = Binary {
            identity: Identity {
                path: path.into(),
                build_id: None,
            },
            file,
        };
        binary.identity.build_id = read_build_id(&binary.fd_path());
        binary
    }
}

/// The target's code files, opened at capture time, and what could not be
/// opened (said in the symbolization log line).
#[derive(Debug, Default)]
pub struct Binaries {
    /// The pid they were opened from.
    pub pid: i32,
    /// The opened files, the executable first.
    pub binaries: Vec<Binary>,
    /// The executable mappings, each with the index of its binary in
    /// `binaries` (None when its file could not be opened).
    pub maps: Vec<(ExecMapping, Option<usize>)>,
    /// Why some (or all) could not be opened.
    pub problems: Vec<String>,
    /// Paths already refused, so each is tried (and reported) once.
    refused: Vec<String>,
}

impl Binaries {
    /// Opens the executable and every executable file mapping of `pid`.
    /// Never fails: what cannot be opened is noted in `problems`, and the
    /// dump is symbolized as far as the rest allows.
    pub fn open(procfs: &ProcFs, pid: i32) -> Binaries {
        let mut out = Binaries {
            pid,
            ..Binaries::default()
        };
        let exe = match procfs.open_exe(pid) {
            Ok(file) => {
                let inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
                // Its path comes from the maps below.
                out.binaries.push(Binary::from_file(String::new(), file));
                Some(inode)
            }
            Err(e) => {
                out.problems
                    .push(format!("cannot open the target's executable: {e}"));
                None
            }
        };
        let maps = match procfs.maps(pid) {
            Ok(text) => parse_maps(&text),
            Err(e) => {
                out.problems.push(format!("cannot read its mappings: {e}"));
                Vec::new()
            }
        };
        for m in maps {
            let index = out.binary_for(procfs, &m, exe);
            out.maps.push((m, index));
        }
        // The executable's path as the maps show it (readlink may differ in
        // a container); matching by path needs the maps' spelling.
        if let (Some(inode), Some(first)) = (exe, out.binaries.first_mut())
            && let Some((m, _)) = out.maps.iter().find(|(m, _)| m.inode == inode)
        {
            first.identity.path = m.path.trim_end_matches(" (deleted)").to_string();
        }
        out
    }

    /// Binaries opened by other means, with no process maps (tests and
    /// benchmarks: profiles whose mappings name these files).
    pub fn from_files(binaries: Vec<Binary>) -> Binaries {
        Binaries {
            binaries,
            ..Binaries::default()
        }
    }

    /// The index of `m`'s binary, opening it when it is new.
    fn binary_for(&mut self, procfs: &ProcFs, m: &ExecMapping, exe: Option<u64>) -> Option<usize> {
        if exe.is_some_and(|inode| inode == m.inode && m.inode != 0) {
            return Some(0);
        }
        let path = m.path.trim_end_matches(" (deleted)");
        if let Some(i) = self.binaries.iter().position(|b| b.identity.path == path) {
            return Some(i);
        }
        if self.refused.iter().any(|p| p == path) {
            return None;
        }
        self.refused.push(path.to_string());
        let refuse = |why: String| format!("{path}: {why}");
        if m.deleted() {
            self.problems
                .push(refuse("deleted since it was mapped".into()));
            return None;
        }
        if self.binaries.len() >= MAX_BINARIES {
            self.problems.push(refuse(format!(
                "over the {MAX_BINARIES} binaries opened per dump"
            )));
            return None;
        }
        let file = match procfs.open_in_root(self.pid, Path::new(path)) {
            Ok(file) => file,
            Err(e) => {
                self.problems.push(refuse(e.to_string()));
                return None;
            }
        };
        match file.metadata() {
            Ok(meta) if meta.len() > MAX_BINARY_SIZE => {
                self.problems.push(refuse(format!(
                    "{} bytes, over the {MAX_BINARY_SIZE}-byte bound",
                    meta.len()
                )));
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                self.problems.push(refuse(e.to_string()));
                return None;
            }
        }
        self.refused.pop();
        self.binaries.push(Binary::from_file(path, file));
        Some(self.binaries.len() - 1)
    }

    /// The identities of the opened binaries, in order.
    pub fn identities(&self) -> Vec<Identity> {
        self.binaries.iter().map(|b| b.identity.clone()).collect()
    }
}

/// The GNU build ID of the ELF file at `path`, in lowercase hex.
fn read_build_id(path: &Path) -> Option<String> {
    blazesym::helper::read_elf_build_id(path)
        .ok()
        .flatten()
        .map(|id| hex(&id))
}
