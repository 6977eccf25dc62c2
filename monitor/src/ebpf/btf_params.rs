//! How many parameters a kernel function takes, read from the kernel's BTF
//! (`/sys/kernel/btf/vmlinux`).
//!
//! The fexit programs read the return value at a fixed slot of their context,
//! right after the function's arguments ([`monitor_common::FexitHook::args`]).
//! A wrong count would pass the verifier and report an argument as the
//! result, so the count is checked here before attaching. aya parses BTF but
//! keeps function prototypes private, hence this small reader of the format
//! (<https://docs.kernel.org/bpf/btf.html>): it walks the type section once
//! for the functions asked about and once for their prototypes.

use std::collections::BTreeMap;

/// BTF's magic number, in the file's (the host's) byte order.
const MAGIC: u16 = 0xeb9f;
/// Kinds this reader needs by number (`BTF_KIND_*`).
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
/// Bytes of a `struct btf_type` before its kind-specific trailer.
const TYPE_HEADER: usize = 12;

/// The parameter count of each of `functions` (the `BTF_KIND_FUNC` of that
/// name); a function absent from the BTF is absent from the map. Fails on a
/// blob that is not BTF or uses a kind this reader cannot size.
pub(super) fn param_counts(
    btf: &[u8],
    functions: &[&str],
) -> Result<BTreeMap<String, usize>, String> {
    let sections = Sections::parse(btf)?;
    // First pass: the prototype type id of each function asked about
    // (functions of one signature share one deduplicated prototype).
    let mut protos: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    sections.walk(|_, kind, name_off, type_id, _| {
        if kind == KIND_FUNC {
            let name = sections.name(name_off)?;
            if let Some(f) = functions.iter().find(|f| f.as_bytes() == name) {
                protos.entry(type_id).or_default().push((*f).to_string());
            }
        }
        Ok(())
    })?;
    // Second pass: each prototype's vlen is its parameter count.
    let mut counts = BTreeMap::new();
    sections.walk(|id, kind, _, _, vlen| {
        if let Some(functions) = protos.get(&id) {
            if kind != KIND_FUNC_PROTO {
                return Err(format!(
                    "{functions:?}: type {id} is kind {kind}, not a prototype"
                ));
            }
            for function in functions {
                counts.insert(function.clone(), vlen as usize);
            }
        }
        Ok(())
    })?;
    Ok(counts)
}

/// The type and string sections of a BTF blob.
struct Sections<'a> {
    types: &'a [u8],
    strings: &'a [u8],
}

impl<'a> Sections<'a> {
    fn parse(btf: &'a [u8]) -> Result<Self, String> {
        let magic = btf
            .get(..2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
            .ok_or("empty BTF")?;
        if magic != MAGIC {
            return Err(format!("not BTF in host byte order (magic {magic:#x})"));
        }
        let hdr_len = u32_at(btf, 4)? as usize;
        let section = |off_at: usize| -> Result<&'a [u8], String> {
            let start = hdr_len + u32_at(btf, off_at)? as usize;
            let len = u32_at(btf, off_at + 4)? as usize;
            btf.get(start..start + len)
                .ok_or_else(|| format!("BTF section at {start}+{len} past the end"))
        };
        Ok(Self {
            types: section(8)?,
            strings: section(16)?,
        })
    }

    /// The NUL-terminated string at `off` of the string section.
    fn name(&self, off: u32) -> Result<&'a [u8], String> {
        let rest = self
            .strings
            .get(off as usize..)
            .ok_or_else(|| format!("name offset {off} past the string section"))?;
        Ok(rest.split(|&b| b == 0).next().unwrap_or_default())
    }

    /// Calls `visit(id, kind, name_off, size_or_type, vlen)` for every type,
    /// ids counted from 1 as the kernel does.
    fn walk(
        &self,
        mut visit: impl FnMut(u32, u32, u32, u32, u32) -> Result<(), String>,
    ) -> Result<(), String> {
        let (mut at, mut id) = (0, 1u32);
        while at < self.types.len() {
            let name_off = u32_at(self.types, at)?;
            let info = u32_at(self.types, at + 4)?;
            let size_or_type = u32_at(self.types, at + 8)?;
            let (kind, vlen) = ((info >> 24) & 0x1f, info & 0xffff);
            visit(id, kind, name_off, size_or_type, vlen)?;
            at += TYPE_HEADER + trailer(kind, vlen as usize)?;
            id += 1;
        }
        Ok(())
    }
}

/// Bytes following a type's header, by kind (include/uapi/linux/btf.h).
fn trailer(kind: u32, vlen: usize) -> Result<usize, String> {
    Ok(match kind {
        // INT, VAR, DECL_TAG: one u32.
        1 | 14 | 17 => 4,
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG.
        2 | 7..=12 | 16 | 18 => 0,
        // ARRAY: struct btf_array.
        3 => 12,
        // STRUCT, UNION (btf_member), DATASEC (btf_var_secinfo), ENUM64.
        4 | 5 | 15 | 19 => 12 * vlen,
        // ENUM (btf_enum), FUNC_PROTO (btf_param).
        6 | 13 => 8 * vlen,
        other => return Err(format!("BTF kind {other} unknown to this reader")),
    })
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, String> {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
        .ok_or_else(|| format!("BTF truncated at byte {at}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob of `types` (kind, name, vlen, size_or_type, trailer bytes).
    fn blob(types: &[(u32, &str, u32, u32, usize)]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut section = Vec::new();
        for &(kind, name, vlen, size_or_type, trailer) in types {
            let name_off = if name.is_empty() {
                0
            } else {
                let off = strings.len() as u32;
                strings.extend_from_slice(name.as_bytes());
                strings.push(0);
                off
            };
            for word in [name_off, (kind << 24) | vlen, size_or_type] {
                section.extend_from_slice(&word.to_ne_bytes());
            }
            section.extend(std::iter::repeat_n(0u8, trailer));
        }
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_ne_bytes());
        out.extend_from_slice(&[1, 0]);
        for word in [24u32, 0, section.len() as u32, section.len() as u32] {
            out.extend_from_slice(&word.to_ne_bytes());
        }
        out.extend_from_slice(&(strings.len() as u32).to_ne_bytes());
        out.extend(section);
        out.extend(strings);
        out
    }

    #[test]
    fn counts_the_parameters_of_named_functions() {
        let btf = blob(&[
            (1, "long", 0, 8, 4),            // 1: INT
            (13, "", 1, 1, 8),               // 2: long (*)(one arg)
            (4, "pt_regs", 2, 16, 24),       // 3: a struct to skip over
            (13, "", 6, 1, 48),              // 4: long (*)(six args)
            (12, "__x64_sys_mmap", 0, 2, 0), // 5
            (12, "__se_sys_mmap", 0, 4, 0),  // 6
            (12, "__x64_sys_brk", 0, 2, 0),  // 7: shares 5's prototype
        ]);
        let asked = [
            "__x64_sys_mmap",
            "__se_sys_mmap",
            "__x64_sys_munmap",
            "__x64_sys_brk",
        ];
        let counts = param_counts(&btf, &asked).unwrap();
        assert_eq!(counts.get("__x64_sys_mmap"), Some(&1));
        assert_eq!(counts.get("__x64_sys_brk"), Some(&1));
        assert_eq!(counts.get("__se_sys_mmap"), Some(&6));
        // Not in the BTF: absent, not zero.
        assert_eq!(counts.get("__x64_sys_munmap"), None);
        assert_eq!(counts.len(), 3);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(param_counts(&[], &["f"]).is_err());
        assert!(param_counts(&[0x9f, 0xeb, 1, 0], &["f"]).is_err());
        let unknown_kind = blob(&[(31, "x", 0, 0, 0), (12, "f", 0, 1, 0)]);
        let e = param_counts(&unknown_kind, &["f"]).unwrap_err();
        assert!(e.contains("kind 31"), "{e}");
        let not_a_proto = blob(&[(1, "int", 0, 4, 4), (12, "f", 0, 1, 0)]);
        let e = param_counts(&not_a_proto, &["f"]).unwrap_err();
        assert!(e.contains("not a prototype"), "{e}");
    }
}
