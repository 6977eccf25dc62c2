//! What grew between two heap profiles: in-use bytes by function (the frame
//! [`frames::blamed`] picks) and by stack (from that frame to the root),
//! before and after, the top N by growth, and how much of the growth they
//! explain. Without a baseline the same table ranks in-use bytes instead.
//!
//! Functions are compared by name, so both profiles must be symbolized for
//! the comparison to mean anything; an unsymbolized frame is named by its
//! address (`0x1a2b`), which matches the same address in the other profile
//! only when both come from the same binary. Every sample counts towards
//! exactly one function and one stack: the totals are the profiles' totals.

use std::collections::HashMap;

use super::frames::{self, FrameKind};
use crate::profile::Profile;

/// The sample type holding in-use bytes (jemalloc_pprof's only column).
pub const IN_USE: &str = "inuse_space";

/// How many rows the table shows unless asked otherwise.
pub const DEFAULT_TOP: usize = 5;

/// Why a profile cannot be compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrowthError {
    /// No column of in-use bytes.
    #[error(
        "the {which} profile has no {IN_USE} sample type (it has: {found}); is it a heap profile?"
    )]
    NoInUseColumn {
        /// "baseline" or "dump".
        which: &'static str,
        /// The sample types it has, `type/unit`, comma-separated.
        found: String,
    },
}

/// One function's in-use bytes in both profiles.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FunctionGrowth {
    /// The function's name (`0x<address>` when unsymbolized).
    pub name: String,
    /// In-use bytes in the baseline (0 without one).
    pub before: i64,
    /// In-use bytes in the dump.
    pub after: i64,
}

/// One stack's in-use bytes in both profiles.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StackGrowth {
    /// Frames from the blamed function (first) to the root.
    pub frames: Vec<String>,
    /// In-use bytes in the baseline (0 without one).
    pub before: i64,
    /// In-use bytes in the dump.
    pub after: i64,
}

impl FunctionGrowth {
    /// `after − before`, saturating.
    pub fn delta(&self) -> i64 {
        self.after.saturating_sub(self.before)
    }
}

impl StackGrowth {
    /// `after − before`, saturating.
    pub fn delta(&self) -> i64 {
        self.after.saturating_sub(self.before)
    }
}

/// The comparison of a dump with its baseline (or, without one, the dump's
/// largest in-use sites, each with `before` 0).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Growth {
    /// Whether a baseline was compared; `false`: the rows are in-use bytes.
    pub against_baseline: bool,
    /// The top functions by growth (largest first, ties by name); only
    /// functions that grew.
    pub by_function: Vec<FunctionGrowth>,
    /// The top stacks by growth, likewise.
    pub by_stack: Vec<StackGrowth>,
    /// Distinct functions blamed in either profile.
    pub functions: usize,
    /// In-use bytes of the whole baseline (0 without one).
    pub total_before: i64,
    /// In-use bytes of the whole dump.
    pub total_after: i64,
    /// The sum of every function's growth, shrinking ones left out: what the
    /// shares are shares of.
    pub gross_growth: i64,
}

impl Growth {
    /// `total_after − total_before`: the net change (shrinking included).
    pub fn net(&self) -> i64 {
        self.total_after.saturating_sub(self.total_before)
    }

    /// The share of [`Growth::gross_growth`] a delta is (`None` if nothing grew).
    pub fn share(&self, delta: i64) -> Option<f64> {
        (self.gross_growth > 0).then(|| delta as f64 / self.gross_growth as f64)
    }

    /// The share of the growth the listed functions explain.
    pub fn top_share(&self) -> Option<f64> {
        let top = self
            .by_function
            .iter()
            .fold(0i64, |sum, f| sum.saturating_add(f.delta()));
        self.share(top)
    }
}

/// Compares `dump` with `baseline`: the top `top` functions and stacks by growth.
pub fn diff(baseline: &Profile, dump: &Profile, top: usize) -> Result<Growth, GrowthError> {
    let mut names = Names::default();
    let before = tally(baseline, "baseline", &mut names)?;
    let after = tally(dump, "dump", &mut names)?;
    Ok(compare(&names, Some(before), after, top))
}

/// The top `top` in-use functions and stacks of `dump`, for when there is no
/// baseline: [`Growth::against_baseline`] is false and every `before` is 0.
pub fn top_in_use(dump: &Profile, top: usize) -> Result<Growth, GrowthError> {
    let mut names = Names::default();
    let after = tally(dump, "dump", &mut names)?;
    Ok(compare(&names, None, after, top))
}

/// Function names shared by both profiles, as small ids.
#[derive(Default)]
struct Names {
    ids: HashMap<String, u32>,
    names: Vec<String>,
    kinds: Vec<FrameKind>,
}

impl Names {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.kinds.push(frames::classify(name));
        self.ids.insert(name.to_owned(), id);
        id
    }

    fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}

/// One profile's in-use bytes by blamed function and by stack.
struct Tally {
    by_function: HashMap<u32, i64>,
    by_stack: HashMap<Vec<u32>, i64>,
    total: i64,
}

fn tally(p: &Profile, which: &'static str, names: &mut Names) -> Result<Tally, GrowthError> {
    let column = in_use_column(p, which)?;
    // Each location's frames (inlined ones first, as pprof lists them).
    let functions: HashMap<u64, &str> = p
        .function
        .iter()
        .map(|f| {
            let name = match p.string(f.name) {
                "" => p.string(f.system_name),
                name => name,
            };
            (f.id, name)
        })
        .collect();
    let mut locations: HashMap<u64, Vec<u32>> = HashMap::with_capacity(p.location.len());
    for l in &p.location {
        let mut ids: Vec<u32> = l
            .line
            .iter()
            .filter_map(|line| functions.get(&line.function_id))
            .filter(|name| !name.is_empty())
            .map(|name| names.id(name))
            .collect();
        if ids.is_empty() {
            ids.push(names.id(&format!("0x{:x}", l.address)));
        }
        locations.insert(l.id, ids);
    }
    let mut out = Tally {
        by_function: HashMap::new(),
        by_stack: HashMap::new(),
        total: 0,
    };
    let mut stack = Vec::new();
    for s in &p.sample {
        let value = s.value.get(column).copied().unwrap_or(0);
        stack.clear();
        for id in &s.location_id {
            stack.extend(locations.get(id).into_iter().flatten());
        }
        let kinds: Vec<FrameKind> = stack.iter().map(|&id| names.kinds[id as usize]).collect();
        let (function, key) = match frames::blamed_kind(&kinds) {
            Some(i) => (stack[i], stack[i..].to_vec()),
            None => (names.id("(no stack)"), Vec::new()),
        };
        let f = out.by_function.entry(function).or_default();
        *f = f.saturating_add(value);
        let k = out.by_stack.entry(key).or_default();
        *k = k.saturating_add(value);
        out.total = out.total.saturating_add(value);
    }
    Ok(out)
}

/// The column of in-use bytes: `inuse_space`, or the only column when it
/// counts bytes (a profile written by another tool).
fn in_use_column(p: &Profile, which: &'static str) -> Result<usize, GrowthError> {
    if let Some(i) = p.sample_type_index(IN_USE) {
        return Ok(i);
    }
    if let [only] = p.sample_type.as_slice()
        && p.string(only.unit) == "bytes"
    {
        return Ok(0);
    }
    let found: Vec<String> = p
        .sample_type
        .iter()
        .map(|vt| format!("{}/{}", p.string(vt.r#type), p.string(vt.unit)))
        .collect();
    Err(GrowthError::NoInUseColumn {
        which,
        found: if found.is_empty() {
            "none".to_owned()
        } else {
            found.join(", ")
        },
    })
}

fn compare(names: &Names, before: Option<Tally>, after: Tally, top: usize) -> Growth {
    let against_baseline = before.is_some();
    let before = before.unwrap_or(Tally {
        by_function: HashMap::new(),
        by_stack: HashMap::new(),
        total: 0,
    });
    let mut functions: HashMap<u32, (i64, i64)> = HashMap::new();
    for (&id, &v) in &before.by_function {
        functions.entry(id).or_default().0 = v;
    }
    for (&id, &v) in &after.by_function {
        functions.entry(id).or_default().1 = v;
    }
    let gross_growth = functions
        .values()
        .map(|(b, a)| a.saturating_sub(*b).max(0))
        .fold(0i64, i64::saturating_add);
    let count = functions.len();
    let mut by_function: Vec<FunctionGrowth> = functions
        .into_iter()
        .map(|(id, (before, after))| FunctionGrowth {
            name: names.name(id).to_owned(),
            before,
            after,
        })
        .filter(|f| f.delta() > 0)
        .collect();
    by_function.sort_by(|a, b| b.delta().cmp(&a.delta()).then_with(|| a.name.cmp(&b.name)));
    by_function.truncate(top);

    let mut stacks: HashMap<&Vec<u32>, (i64, i64)> = HashMap::new();
    for (key, &v) in &before.by_stack {
        stacks.entry(key).or_default().0 = v;
    }
    for (key, &v) in &after.by_stack {
        stacks.entry(key).or_default().1 = v;
    }
    let mut by_stack: Vec<StackGrowth> = stacks
        .into_iter()
        .map(|(key, (before, after))| StackGrowth {
            frames: key.iter().map(|&id| names.name(id).to_owned()).collect(),
            before,
            after,
        })
        .filter(|s| s.delta() > 0)
        .collect();
    by_stack.sort_by(|a, b| {
        b.delta()
            .cmp(&a.delta())
            .then_with(|| a.frames.cmp(&b.frames))
    });
    by_stack.truncate(top);

    Growth {
        against_baseline,
        by_function,
        by_stack,
        functions: count,
        total_before: before.total,
        total_after: after.total,
        gross_growth,
    }
}

#[cfg(test)]
mod tests;
