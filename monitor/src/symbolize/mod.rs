//! Symbolization in the monitor: the addresses of an unsymbolized heap
//! profile become function names (demangled), inlined frames and file:line,
//! resolved from the target's own binaries.
//!
//! [`Binaries`] opens the target's executable and libraries when a dump is
//! captured (through `/proc/<pid>/exe` and `/proc/<pid>/root`, never
//! `map_files/`); [`process`] runs before the upload, on a blocking thread:
//! decode, [`symbolize`], re-encode. Nothing here can lose a dump: whatever
//! fails, the dump is stored as it came, and [`Outcome::summary`] says why.
//! Nothing is cached between dumps: each gets a fresh symbolizer, dropped
//! with its last address, so the idle monitor holds no symbol tables.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::profile::{Profile, decode_gz, encode_gz};

mod binaries;
pub mod maps;
mod resolve;

pub use binaries::{Binaries, Binary, MAX_BINARIES, MAX_BINARY_SIZE};
pub use resolve::{Frame, apply as write_frames};

use maps::{BinaryAddr, locate, match_binary, translate};

/// A compressed profile may inflate to at most this many times its size
/// before decoding gives up (heap profiles inflate 3-5x).
pub const MAX_INFLATION: u64 = 8;

/// SYMBOLIZE and SYMBOLIZE_MAX_SIZE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolizeSettings {
    /// Off: binaries are not opened and dumps are stored as they came.
    pub enabled: bool,
    /// Larger dumps (compressed) are stored as they came.
    pub max_size: u64,
}

impl Default for SymbolizeSettings {
    fn default() -> Self {
        SymbolizeSettings {
            enabled: true,
            max_size: 4 << 20,
        }
    }
}

/// What symbolizing one profile did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Locations without function names before (the M of "N of M").
    pub wanted: usize,
    /// Of those, how many now have names.
    pub symbolized: usize,
    /// Why the others have none: reason → locations.
    pub unresolved: BTreeMap<String, usize>,
    /// What could not be opened at capture time (said when it matters).
    pub opening: Vec<String>,
    /// Time spent.
    pub took: Duration,
}

impl Report {
    fn fail(&mut self, why: impl Into<String>, locations: usize) {
        *self.unresolved.entry(why.into()).or_default() += locations;
    }

    /// One line: "symbolized N of M locations in X ms", and the reasons
    /// for the rest, most frequent first.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "symbolized {} of {} locations in {} ms",
            self.symbolized,
            self.wanted,
            self.took.as_millis()
        );
        let mut reasons: Vec<_> = self.unresolved.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (i, (why, n)) in reasons.iter().take(3).enumerate() {
            line.push_str(if i == 0 { "; not symbolized: " } else { "; " });
            line.push_str(&format!("{n} ({why})"));
        }
        if reasons.len() > 3 {
            line.push_str(&format!("; {} more reasons", reasons.len() - 3));
        }
        if self.symbolized < self.wanted
            && let Some(first) = self.opening.first()
        {
            line.push_str(&format!("; opening the target's binaries: {first}"));
            if self.opening.len() > 1 {
                line.push_str(&format!(" (and {} more)", self.opening.len() - 1));
            }
        }
        line
    }
}

/// Resolves every location of `profile` that has no function yet and whose
/// binary is among `binaries` (matched by build ID, else by path), writing
/// functions and lines in place. Locations it cannot resolve keep their
/// address; the report says why.
pub fn symbolize(profile: &mut Profile, binaries: &Binaries) -> Report {
    let started = Instant::now();
    let mut report = Report::default();
    let identities = binaries.identities();
    // Per binary: (location index, address in the binary).
    let mut groups: BTreeMap<usize, Vec<(usize, BinaryAddr)>> = BTreeMap::new();
    for (i, loc) in profile.location.iter().enumerate() {
        if !loc.line.is_empty() {
            continue;
        }
        report.wanted += 1;
        let target = if loc.mapping_id == 0 {
            match locate_in(binaries, loc.address) {
                Ok(found) => found,
                Err(why) => {
                    report.fail(why, 1);
                    continue;
                }
            }
        } else {
            let Some(m) = profile.mapping.iter().find(|m| m.id == loc.mapping_id) else {
                report.fail("its mapping is missing", 1);
                continue;
            };
            let (build_id, path) = (profile.string(m.build_id), profile.string(m.filename));
            match match_binary(build_id, path, &identities) {
                Ok(b) => match translate(m, loc.address) {
                    Some(addr) => (b, addr),
                    None => {
                        report.fail("address outside its mapping", 1);
                        continue;
                    }
                },
                Err(why) => {
                    report.fail(why.to_string(), 1);
                    continue;
                }
            }
        };
        groups.entry(target.0).or_default().push((i, target.1));
    }
    if !groups.is_empty() {
        let symbolizer = resolve::symbolizer();
        let mut resolved = Vec::new();
        for (b, wanted) in groups {
            let binary = &binaries.binaries[b];
            let addrs: Vec<BinaryAddr> = wanted.iter().map(|(_, a)| *a).collect();
            match resolve::resolve(&symbolizer, &binary.fd_path(), &addrs) {
                Ok(frames) => {
                    for ((loc, _), frames) in wanted.into_iter().zip(frames) {
                        match frames {
                            Some(frames) => resolved.push((loc, frames)),
                            None => report.fail(
                                format!("no symbol at the address in {}", binary.identity.path),
                                1,
                            ),
                        }
                    }
                }
                Err(e) => report.fail(
                    format!("cannot read {}: {e}", binary.identity.path),
                    wanted.len(),
                ),
            }
        }
        report.symbolized = resolved.len();
        resolve::apply(profile, resolved);
    }
    report.took = started.elapsed();
    report
}

/// The binary and address of a location without a mapping, from the
/// target's own maps (its address is then a process address).
fn locate_in(binaries: &Binaries, address: u64) -> Result<(usize, BinaryAddr), String> {
    let maps: Vec<_> = binaries.maps.iter().map(|(m, _)| m.clone()).collect();
    let (i, addr) = locate(&maps, address)
        .ok_or_else(|| "no mapping, and in no executable mapping of the target".to_string())?;
    match binaries.maps[i].1 {
        Some(b) => Ok((b, addr)),
        None => Err(format!("{} was not opened", binaries.maps[i].0.path)),
    }
}

/// What [`process`] made of one dump.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The decoded profile (symbolized where it could be), for whoever
    /// reads it next (the growth diff); None when it was not decoded.
    pub profile: Option<Profile>,
    /// The symbolized profile, gzipped, to store instead of the original;
    /// None to store the dump as it came.
    pub symbolized: Option<Vec<u8>>,
    /// What symbolizing did, when it ran.
    pub report: Option<Report>,
    /// Why symbolization did not run (or did not change the dump).
    pub skipped: Option<String>,
}

impl Outcome {
    fn skipped(why: impl Into<String>, profile: Option<Profile>) -> Outcome {
        Outcome {
            profile,
            skipped: Some(why.into()),
            ..Outcome::default()
        }
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        match (&self.report, &self.skipped) {
            (Some(r), None) => r.summary(),
            (Some(r), Some(why)) => format!("{}; {why}", r.summary()),
            (None, Some(why)) => format!("not symbolized: {why}"),
            (None, None) => "not symbolized".into(),
        }
    }
}

/// Decodes a captured dump (`gz`), symbolizes it from `binaries` and
/// re-encodes it. Blocking (reads the binaries): run it off the runtime.
pub fn process(gz: &[u8], binaries: Option<&Binaries>, settings: &SymbolizeSettings) -> Outcome {
    let size = gz.len() as u64;
    if size > settings.max_size {
        return Outcome::skipped(
            format!(
                "the dump is {size} bytes, over SYMBOLIZE_MAX_SIZE ({} bytes)",
                settings.max_size
            ),
            None,
        );
    }
    let mut profile = match decode_gz(gz, settings.max_size.saturating_mul(MAX_INFLATION)) {
        Ok(p) => p,
        Err(e) => return Outcome::skipped(format!("cannot decode it: {e}"), None),
    };
    if !settings.enabled {
        return Outcome::skipped("SYMBOLIZE=false", Some(profile));
    }
    let Some(binaries) = binaries else {
        return Outcome::skipped(
            "the target's binaries were not opened (a dump from an earlier run, or read from the spool)",
            Some(profile),
        );
    };
    let mut report = symbolize(&mut profile, binaries);
    if report.wanted == 0 {
        return Outcome {
            profile: Some(profile),
            report: Some(report),
            skipped: Some("it was symbolized already".into()),
            ..Outcome::default()
        };
    }
    report.opening = binaries.problems.clone();
    let (symbolized, skipped) = if report.symbolized > 0 {
        (Some(encode_gz(&profile)), None)
    } else {
        (None, Some("no location could be resolved".to_string()))
    };
    Outcome {
        profile: Some(profile),
        symbolized,
        report: Some(report),
        skipped,
    }
}

#[cfg(test)]
mod tests;
