//! Heap profiles as the monitor reads and rewrites them: the gzipped pprof a
//! target sends (`pprof`), decoded and checked here.
//!
//! Decoding is pure (bytes in, [`Profile`] out) so that the symbolizer, the
//! growth diff and the `diff`/`top` commands share one reading of a profile
//! and one set of errors.

use std::io::{Read, Write};

use prost::Message;

pub mod pprof;

pub use pprof::Profile;

/// Why bytes are not a usable profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Not gzip, truncated, or larger than allowed once inflated.
    #[error("not a gzipped profile: {0}")]
    Gzip(#[source] std::io::Error),
    /// Inflated to more than the bound the caller set.
    #[error("the profile inflates to more than {max} bytes")]
    TooLarge {
        /// The bound, in bytes.
        max: u64,
    },
    /// Gzip was fine, the protobuf inside is not a pprof.
    #[error("not a pprof protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// Decoded, but references something that does not exist.
    #[error("malformed pprof: {0}")]
    Malformed(String),
}

/// Gunzips (at most `max_inflated` bytes) and decodes a pprof, then checks
/// that every string, function, location and mapping it references exists.
pub fn decode_gz(bytes: &[u8], max_inflated: u64) -> Result<Profile, ProfileError> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        // One byte past the bound tells "exactly max" from "more".
        .take(max_inflated.saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(ProfileError::Gzip)?;
    if raw.len() as u64 > max_inflated {
        return Err(ProfileError::TooLarge { max: max_inflated });
    }
    let profile = Profile::decode(raw.as_slice())?;
    validate(&profile)?;
    Ok(profile)
}

/// Encodes and gzips a profile.
pub fn encode_gz(profile: &Profile) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail, nor can finishing it.
    let _ = enc.write_all(&profile.encode_to_vec());
    enc.finish().unwrap_or_default()
}

/// Checks the references a reader follows, so later code can index freely
/// through [`Profile::string`] and friends without panicking.
pub fn validate(p: &Profile) -> Result<(), ProfileError> {
    let bad = |what: String| Err(ProfileError::Malformed(what));
    if p.string_table.first().is_some_and(|s| !s.is_empty()) {
        return bad(format!(
            "string_table[0] is {:?}, not \"\"",
            p.string_table[0]
        ));
    }
    let strings = p.string_table.len() as i64;
    let string_ok = |i: i64| (0..strings.max(1)).contains(&i);
    let types = p.sample_type.len();
    for (i, vt) in p.sample_type.iter().enumerate() {
        if !string_ok(vt.r#type) || !string_ok(vt.unit) {
            return bad(format!("sample_type[{i}] names a string out of range"));
        }
    }
    for f in &p.function {
        if ![f.name, f.system_name, f.filename]
            .into_iter()
            .all(string_ok)
        {
            return bad(format!("function {} names a string out of range", f.id));
        }
    }
    for m in &p.mapping {
        if !string_ok(m.filename) || !string_ok(m.build_id) {
            return bad(format!("mapping {} names a string out of range", m.id));
        }
    }
    let functions: std::collections::HashSet<u64> = p.function.iter().map(|f| f.id).collect();
    let mappings: std::collections::HashSet<u64> = p.mapping.iter().map(|m| m.id).collect();
    for l in &p.location {
        if l.mapping_id != 0 && !mappings.contains(&l.mapping_id) {
            return bad(format!("location {} names mapping {}", l.id, l.mapping_id));
        }
        if let Some(line) = l.line.iter().find(|x| !functions.contains(&x.function_id)) {
            return bad(format!(
                "location {} names function {}",
                l.id, line.function_id
            ));
        }
    }
    let locations: std::collections::HashSet<u64> = p.location.iter().map(|l| l.id).collect();
    for (i, s) in p.sample.iter().enumerate() {
        if s.value.len() != types {
            return bad(format!(
                "sample {i} has {} values for {types} sample types",
                s.value.len()
            ));
        }
        if let Some(id) = s.location_id.iter().find(|id| !locations.contains(id)) {
            return bad(format!("sample {i} names location {id}"));
        }
    }
    Ok(())
}

impl Profile {
    /// The string at `index`, or "" when out of range (a validated profile
    /// has none out of range).
    pub fn string(&self, index: i64) -> &str {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.string_table.get(i))
            .map_or("", String::as_str)
    }

    /// The index of `s` in the string table, appending it when absent.
    pub fn intern(&mut self, s: &str) -> i64 {
        if self.string_table.is_empty() {
            self.string_table.push(String::new());
        }
        if let Some(i) = self.string_table.iter().position(|x| x == s) {
            return i as i64;
        }
        self.string_table.push(s.to_owned());
        (self.string_table.len() - 1) as i64
    }

    /// The column of the sample type named `name` (e.g. `inuse_space`).
    pub fn sample_type_index(&self, name: &str) -> Option<usize> {
        self.sample_type
            .iter()
            .position(|vt| self.string(vt.r#type) == name)
    }
}

#[cfg(test)]
mod tests;
