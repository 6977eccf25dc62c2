//! Addresses to frames with blazesym, and frames into the profile.

use std::collections::HashMap;
use std::path::Path;

use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{CodeInfo, Input, Symbolized, Symbolizer};

use super::maps::BinaryAddr;
use crate::profile::Profile;
use crate::profile::pprof::{Function, Line};

/// One function of a resolved address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Demangled function name.
    pub name: String,
    /// Source file, "" when the binary has no debug info for it.
    pub file: String,
    /// Line in `file`, 0 when unknown.
    pub line: u32,
}

/// A symbolizer for one dump: code info and inlined frames on, names
/// demangled, and no debug directories of the monitor's own file system
/// searched (they hold the monitor's files, not the target's).
pub fn symbolizer() -> Symbolizer {
    Symbolizer::builder()
        .enable_code_info(true)
        .enable_inlined_fns(true)
        .enable_demangling(true)
        .enable_auto_reload(false)
        .set_debug_dirs(Some(Vec::<std::path::PathBuf>::new()))
        .build()
}

/// Resolves `addrs` in the ELF file at `binary`: for each, its frames
/// innermost (most inlined) first, or None when it resolves to nothing.
pub fn resolve(
    symbolizer: &Symbolizer,
    binary: &Path,
    addrs: &[BinaryAddr],
) -> Result<Vec<Option<Vec<Frame>>>, String> {
    let src = Source::from(Elf::new(binary));
    let mut out = vec![None; addrs.len()];
    for virt in [true, false] {
        let (index, raw): (Vec<usize>, Vec<u64>) = addrs
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match (a, virt) {
                (BinaryAddr::Virt(x), true) | (BinaryAddr::File(x), false) => Some((i, *x)),
                _ => None,
            })
            .unzip();
        if raw.is_empty() {
            continue;
        }
        let input = if virt {
            Input::VirtOffset(raw.as_slice())
        } else {
            Input::FileOffset(raw.as_slice())
        };
        let results = symbolizer
            .symbolize(&src, input)
            .map_err(|e| format!("{e:#}"))?;
        for (i, result) in index.into_iter().zip(results) {
            out[i] = frames(result);
        }
    }
    Ok(out)
}

/// pprof's order: the innermost inlined function first, the function the
/// address is in last. blazesym gives the outer function with the inlined
/// ones nested after it, each with the code location inside itself.
fn frames(result: Symbolized<'_>) -> Option<Vec<Frame>> {
    let Symbolized::Sym(sym) = result else {
        return None;
    };
    let frame = |name: &str, code: Option<&CodeInfo<'_>>| Frame {
        name: name.to_string(),
        file: code.map_or_else(String::new, |c| c.to_path().display().to_string()),
        line: code.and_then(|c| c.line).unwrap_or(0),
    };
    let mut out: Vec<Frame> = sym
        .inlined
        .iter()
        .rev()
        .map(|f| frame(&f.name, f.code_info.as_ref()))
        .collect();
    out.push(frame(&sym.name, sym.code_info.as_deref()));
    Some(out)
}

/// Writes resolved frames into `profile`: a function per distinct (name,
/// file), the location's lines, and the mapping flags pprof readers check.
/// `resolved` pairs a location's index with its frames (innermost first).
pub fn apply(profile: &mut Profile, resolved: Vec<(usize, Vec<Frame>)>) {
    let mut strings: HashMap<String, i64> = profile
        .string_table
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i as i64))
        .collect();
    if profile.string_table.is_empty() {
        profile.string_table.push(String::new());
        strings.insert(String::new(), 0);
    }
    let mut intern = |table: &mut Vec<String>, s: &str| -> i64 {
        if let Some(&i) = strings.get(s) {
            return i;
        }
        table.push(s.to_string());
        let i = (table.len() - 1) as i64;
        strings.insert(s.to_string(), i);
        i
    };
    let mut functions: HashMap<(i64, i64), u64> = profile
        .function
        .iter()
        .map(|f| ((f.name, f.filename), f.id))
        .collect();
    let mut next_id = profile.function.iter().map(|f| f.id).max().unwrap_or(0) + 1;
    for (loc, frames) in resolved {
        let mut lines = Vec::with_capacity(frames.len());
        for f in &frames {
            let name = intern(&mut profile.string_table, &f.name);
            let file = intern(&mut profile.string_table, &f.file);
            let id = *functions.entry((name, file)).or_insert_with(|| {
                profile.function.push(Function {
                    id: next_id,
                    name,
                    system_name: name,
                    filename: file,
                    start_line: 0,
                });
                next_id += 1;
                next_id - 1
            });
            lines.push(Line {
                function_id: id,
                line: i64::from(f.line),
                column: 0,
            });
        }
        let Some(location) = profile.location.get_mut(loc) else {
            continue;
        };
        location.line = lines;
        let mapping_id = location.mapping_id;
        if let Some(m) = profile.mapping.iter_mut().find(|m| m.id == mapping_id) {
            m.has_functions = true;
            m.has_filenames |= frames.iter().any(|f| !f.file.is_empty());
            m.has_line_numbers |= frames.iter().any(|f| f.line > 0);
            m.has_inline_frames |= frames.len() > 1;
        }
    }
}
