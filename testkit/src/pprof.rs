//! Decodes a gzipped pprof for real: gunzip with flate2, then the
//! `perftools.profiles.Profile` protobuf with prost, using hand-written message
//! definitions (field numbers from pprof's profile.proto) instead of a build
//! script. Only the fields the tests look at are declared; prost skips the rest.

use std::collections::BTreeSet;
use std::io::Read;

use anyhow::{Context, bail};
use prost::Message;

/// `perftools.profiles.Profile`, minimal.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    /// What each sample value measures.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The samples.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// Code locations referenced by samples.
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// Functions referenced by locations.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// All strings; index 0 must be "".
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
}

/// `perftools.profiles.ValueType`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    /// Index into the string table.
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// Index into the string table.
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// `perftools.profiles.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per sample type.
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
}

/// `perftools.profiles.Location`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    /// Unique, non-zero.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Instruction address.
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Inlined frames, innermost first.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

/// `perftools.profiles.Line`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    /// Function id.
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// Source line.
    #[prost(int64, tag = "2")]
    pub line: i64,
}

/// `perftools.profiles.Function`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    /// Unique, non-zero.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Index into the string table (human-readable name).
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// Index into the string table (mangled name).
    #[prost(int64, tag = "3")]
    pub system_name: i64,
}

/// What the tests want to know about a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileSummary {
    /// `(type, unit)` of each sample value, e.g. `("inuse_space", "bytes")`.
    pub sample_types: Vec<(String, String)>,
    /// Number of samples.
    pub samples: usize,
    /// Sum of each sample value column.
    pub totals: Vec<i64>,
    /// Every function name (and system name) in the profile.
    pub functions: BTreeSet<String>,
}

impl ProfileSummary {
    /// Whether any function name contains `needle`.
    pub fn has_function(&self, needle: &str) -> bool {
        self.functions.iter().any(|f| f.contains(needle))
    }
}

/// Gunzips and decodes a pprof and summarizes it. Fails on anything that is
/// not a well-formed profile (bad gzip, bad protobuf, dangling string index).
pub fn decode(bytes: &[u8]) -> anyhow::Result<ProfileSummary> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut raw)
        .context("gunzipping the pprof")?;
    let profile = Profile::decode(raw.as_slice()).context("decoding the pprof protobuf")?;
    summarize(&profile)
}

/// Summarizes an already decoded profile.
pub fn summarize(profile: &Profile) -> anyhow::Result<ProfileSummary> {
    let strings = &profile.string_table;
    if strings.first().is_some_and(|s| !s.is_empty()) {
        bail!("string_table[0] is {:?}, pprof requires \"\"", strings[0]);
    }
    let string = |i: i64| -> anyhow::Result<String> {
        usize::try_from(i)
            .ok()
            .and_then(|i| strings.get(i))
            .cloned()
            .with_context(|| {
                format!(
                    "string index {i} out of range (table has {})",
                    strings.len()
                )
            })
    };
    let sample_types = profile
        .sample_type
        .iter()
        .map(|vt| Ok((string(vt.r#type)?, string(vt.unit)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut totals = vec![0i64; sample_types.len()];
    for sample in &profile.sample {
        for (total, v) in totals.iter_mut().zip(&sample.value) {
            *total += v;
        }
    }
    let mut functions = BTreeSet::new();
    for f in &profile.function {
        for idx in [f.name, f.system_name] {
            let name = string(idx)?;
            if !name.is_empty() {
                functions.insert(name);
            }
        }
    }
    Ok(ProfileSummary {
        sample_types,
        samples: profile.sample.len(),
        totals,
        functions,
    })
}

/// Encodes and gzips a profile (for tests that need a valid pprof of their own).
pub fn encode(profile: &Profile) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(&profile.encode_to_vec());
    enc.finish().unwrap_or_default()
}
