//! The pure half of symbolization: which mappings of /proc/<pid>/maps hold
//! code, how a profile's mapping names one of the opened binaries, and how a
//! profile address becomes an address inside that binary.

use crate::profile::pprof::Mapping;

/// One executable, file-backed line of /proc/<pid>/maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecMapping {
    /// First address of the mapping in the process.
    pub start: u64,
    /// One past its last address.
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    /// Inode of the mapped file (0 when unknown).
    pub inode: u64,
    /// The file as the process sees it; " (deleted)" kept when the kernel says so.
    pub path: String,
}

impl ExecMapping {
    /// The file was deleted (or replaced) since it was mapped: its path no
    /// longer leads to it.
    pub fn deleted(&self) -> bool {
        self.path.ends_with(" (deleted)")
    }
}

/// The executable, file-backed mappings of a /proc/<pid>/maps text; other
/// lines (anonymous, data, [vdso], malformed) are skipped.
pub fn parse_maps(text: &str) -> Vec<ExecMapping> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<ExecMapping> {
    // address perms offset dev inode [path, which may hold spaces]
    let mut rest = line;
    let mut field = || {
        let trimmed = rest.trim_start();
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        let (word, after) = trimmed.split_at(end);
        rest = after;
        word
    };
    let (range, perms, offset, _dev, inode) = (field(), field(), field(), field(), field());
    let path = rest.trim_start();
    if !perms.contains('x') || !path.starts_with('/') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    Some(ExecMapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        inode: inode.parse().ok()?,
        path: path.to_string(),
    })
}

/// An address inside one binary, in the form the symbolizer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BinaryAddr {
    /// A virtual address as in the ELF file's own headers and symbols.
    Virt(u64),
    /// An offset into the file.
    File(u64),
}

/// Where `address` of a location in `mapping` lies in the mapped file.
///
/// Two conventions meet here. pprof's own: the address is a process address
/// within `memory_start..memory_limit`, and `file_offset` is the file offset
/// of `memory_start`. jemalloc_pprof's (unsymbolized): every mapping spans
/// `0..u64::MAX` at file offset 0 and the address is already the ELF
/// virtual address (the process address less the load bias). None when the
/// address is outside the mapping.
pub fn translate(mapping: &Mapping, address: u64) -> Option<BinaryAddr> {
    let whole_space = mapping.memory_start == 0
        && mapping.file_offset == 0
        && matches!(mapping.memory_limit, 0 | u64::MAX);
    if whole_space {
        return Some(BinaryAddr::Virt(address));
    }
    if (mapping.memory_start..mapping.memory_limit).contains(&address) {
        return (address - mapping.memory_start)
            .checked_add(mapping.file_offset)
            .map(BinaryAddr::File);
    }
    None
}

/// For a location without a mapping: the mapping of /proc/<pid>/maps holding
/// `address` (a process address), and its file offset there.
pub fn locate(maps: &[ExecMapping], address: u64) -> Option<(usize, BinaryAddr)> {
    let i = maps
        .iter()
        .position(|m| (m.start..m.end).contains(&address))?;
    let m = &maps[i];
    Some((i, BinaryAddr::File(address - m.start + m.offset)))
}

/// What the symbolizer knows of an opened binary, for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The path the process mapped it from.
    pub path: String,
    /// Its GNU build ID in lowercase hex, when it has one.
    pub build_id: Option<String>,
}

/// Why a profile's mapping matches none of the opened binaries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unmatched {
    /// A binary with that path was opened, but its build ID differs: the
    /// profile is of another build (or the file was replaced).
    WrongBuildId {
        /// The mapping's file.
        path: String,
        /// The build ID the profile names.
        wanted: String,
        /// The opened file's.
        found: String,
    },
    /// No opened binary has that build ID or path.
    NotOpened {
        /// The mapping's file (or build ID when it names no file).
        what: String,
    },
}

impl std::fmt::Display for Unmatched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unmatched::WrongBuildId {
                path,
                wanted,
                found,
            } => write!(
                f,
                "wrong build ID for {path}: the profile names {wanted}, the target's file has {found}"
            ),
            Unmatched::NotOpened { what } => {
                write!(f, "{what} is not among the target's opened binaries")
            }
        }
    }
}

/// The binary a mapping (with `build_id` and `path`, either may be empty)
/// was made from: by build ID when it names one, else by path.
pub fn match_binary(build_id: &str, path: &str, binaries: &[Identity]) -> Result<usize, Unmatched> {
    let wanted = build_id.trim().to_ascii_lowercase();
    if !wanted.is_empty() {
        if let Some(i) = binaries
            .iter()
            .position(|b| b.build_id.as_deref() == Some(wanted.as_str()))
        {
            return Ok(i);
        }
        if let Some(b) = binaries.iter().find(|b| b.path == path) {
            return Err(Unmatched::WrongBuildId {
                path: path.to_string(),
                wanted,
                found: b.build_id.clone().unwrap_or_else(|| "none".into()),
            });
        }
    } else if let Some(i) = binaries
        .iter()
        .position(|b| !path.is_empty() && b.path == path)
    {
        return Ok(i);
    }
    let what = if path.is_empty() { wanted } else { path.into() };
    Err(Unmatched::NotOpened { what })
}

/// Build ID bytes as pprof writes them: lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
