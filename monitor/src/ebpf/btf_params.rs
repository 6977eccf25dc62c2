//! What the kernel's BTF (`/sys/kernel/btf/vmlinux`) says about the
//! functions and tracepoints the programs hook: how many parameters a kernel
//! function takes, what a raw tracepoint passes, where a struct keeps a field.
//!
//! The fexit programs read the return value at a fixed slot of their context,
//! right after the function's arguments ([`monitor_common::FexitHook::args`]).
//! A wrong count would pass the verifier and report an argument as the
//! result, so the count is checked here before attaching. The OOM hook's
//! raw tracepoint changed its arguments between kernels (`int pid` on older
//! ones, `struct task_struct *` on newer ones), so its prototype and the offset of
//! `task_struct.tgid` are read here too. aya parses BTF but keeps function
//! prototypes and struct members private, hence this small reader of the
//! format (<https://docs.kernel.org/bpf/btf.html>).

use std::collections::BTreeMap;

/// BTF's magic number, in the file's (the host's) byte order.
const MAGIC: u16 = 0xeb9f;
/// Kinds this reader needs by number (`BTF_KIND_*`).
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
/// Kinds that only qualify or rename another type: VOLATILE, CONST,
/// RESTRICT, TYPE_TAG (and TYPEDEF, listed above).
const QUALIFIERS: [u32; 4] = [9, 10, 11, 18];
/// How deep type chains and anonymous members are followed; the kernel's
/// own are a handful deep, a cycle would otherwise loop forever.
const MAX_DEPTH: usize = 32;
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

/// A raw tracepoint's argument type, as far as the OOM hook cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ArgType {
    /// An integer of this many bytes (typedefs and qualifiers resolved).
    Int {
        /// Size in bytes.
        size: u32,
    },
    /// A pointer to the struct of this name.
    StructPtr(String),
    /// Anything else, by BTF kind number.
    Other(u32),
}

/// The arguments a raw tracepoint passes to BPF programs (its `TP_PROTO`),
/// read from the `btf_trace_<tracepoint>` typedef the kernel declares for
/// every tracepoint; the hidden leading `void *__data` is left out. `None`
/// when the BTF has no such typedef.
pub(super) fn tracepoint_args(
    btf: &[u8],
    tracepoint: &str,
) -> Result<Option<Vec<ArgType>>, String> {
    let types = Types::index(btf)?;
    let typedef = format!("btf_trace_{tracepoint}");
    let Some(id) = types.find(KIND_TYPEDEF, &typedef)? else {
        return Ok(None);
    };
    let pointer = types.get(types.get(id)?.size_or_type)?;
    let proto = types.get(pointer.size_or_type)?;
    if pointer.kind != KIND_PTR || proto.kind != KIND_FUNC_PROTO {
        return Err(format!(
            "{typedef} is not a pointer to a function prototype"
        ));
    }
    let mut args = Vec::new();
    // Each btf_param: name offset, type id.
    for param in proto.trailer.chunks_exact(8).skip(1) {
        let arg = types.resolve(u32_at(param, 4)?)?;
        args.push(match arg.kind {
            KIND_INT => ArgType::Int {
                size: arg.size_or_type,
            },
            KIND_PTR => {
                let to = types.resolve(arg.size_or_type)?;
                if to.kind == KIND_STRUCT {
                    ArgType::StructPtr(String::from_utf8_lossy(types.name(to.name_off)?).into())
                } else {
                    ArgType::Other(KIND_PTR)
                }
            }
            other => ArgType::Other(other),
        });
    }
    Ok(Some(args))
}

/// Where a struct keeps an integer field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Field {
    /// Byte offset from the start of the struct.
    pub(super) offset: u32,
    /// Size in bytes.
    pub(super) size: u32,
}

/// The offset and size of integer field `member` of `struct name`, looking
/// into anonymous struct and union members too. Fails when the struct or
/// the field is missing, or the field is a bitfield or not an integer.
pub(super) fn int_field(btf: &[u8], name: &str, member: &str) -> Result<Field, String> {
    let types = Types::index(btf)?;
    let id = types
        .find(KIND_STRUCT, name)?
        .ok_or_else(|| format!("no struct {name} in the BTF"))?;
    let (bits, type_id) = types
        .member(id, member, 0, 0)?
        .ok_or_else(|| format!("struct {name} has no member {member}"))?;
    let field = types.resolve(type_id)?;
    if field.kind != KIND_INT {
        return Err(format!(
            "{name}.{member} is of kind {}, not an integer",
            field.kind
        ));
    }
    if bits % 8 != 0 {
        return Err(format!("{name}.{member} is not byte-aligned (bit {bits})"));
    }
    Ok(Field {
        offset: bits / 8,
        size: field.size_or_type,
    })
}

/// One type of the BTF: its header, and the kind-specific bytes after it.
#[derive(Clone, Copy, Debug)]
struct Type<'a> {
    kind: u32,
    /// `kind_flag`: for a struct, member offsets carry a bitfield size.
    kflag: bool,
    name_off: u32,
    size_or_type: u32,
    trailer: &'a [u8],
}

/// The types of a BTF blob, indexed by id.
struct Types<'a> {
    sections: Sections<'a>,
    /// Start of each type in the type section; id 1 at index 0.
    starts: Vec<usize>,
}

impl<'a> Types<'a> {
    fn index(btf: &'a [u8]) -> Result<Self, String> {
        let sections = Sections::parse(btf)?;
        let mut starts = Vec::new();
        let mut at = 0;
        sections.walk(|_, kind, _, _, vlen| {
            starts.push(at);
            at += TYPE_HEADER + trailer(kind, vlen as usize)?;
            Ok(())
        })?;
        Ok(Self { sections, starts })
    }

    fn get(&self, id: u32) -> Result<Type<'a>, String> {
        let at = id
            .checked_sub(1)
            .and_then(|i| self.starts.get(i as usize))
            .copied()
            .ok_or_else(|| format!("BTF type id {id} out of range"))?;
        let types = self.sections.types;
        let info = u32_at(types, at + 4)?;
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        let start = at + TYPE_HEADER;
        let end = start + trailer(kind, vlen)?;
        Ok(Type {
            kind,
            kflag: info >> 31 == 1,
            name_off: u32_at(types, at)?,
            size_or_type: u32_at(types, at + 8)?,
            trailer: types
                .get(start..end)
                .ok_or_else(|| format!("BTF type {id} truncated"))?,
        })
    }

    fn name(&self, off: u32) -> Result<&'a [u8], String> {
        self.sections.name(off)
    }

    /// The first type of `kind` named `name`.
    fn find(&self, kind: u32, name: &str) -> Result<Option<u32>, String> {
        for id in 1..=self.starts.len() as u32 {
            let t = self.get(id)?;
            if t.kind == kind && self.name(t.name_off)? == name.as_bytes() {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The type `id` stands for once typedefs and qualifiers are peeled off.
    fn resolve(&self, id: u32) -> Result<Type<'a>, String> {
        self.resolve_id(id).map(|(_, t)| t)
    }

    /// [`Self::resolve`], with the id it lands on.
    fn resolve_id(&self, mut id: u32) -> Result<(u32, Type<'a>), String> {
        for _ in 0..MAX_DEPTH {
            let t = self.get(id)?;
            if t.kind != KIND_TYPEDEF && !QUALIFIERS.contains(&t.kind) {
                return Ok((id, t));
            }
            id = t.size_or_type;
        }
        Err(format!("BTF type chain from {id} deeper than {MAX_DEPTH}"))
    }

    /// Bit offset (from the outermost struct) and type of member `member`
    /// of struct or union `id`, searching anonymous members depth-first.
    fn member(
        &self,
        id: u32,
        member: &str,
        base: u32,
        depth: usize,
    ) -> Result<Option<(u32, u32)>, String> {
        if depth > MAX_DEPTH {
            return Err(format!("anonymous members nested deeper than {MAX_DEPTH}"));
        }
        let t = self.get(id)?;
        // Each btf_member: name offset, type id, offset.
        for m in t.trailer.chunks_exact(12) {
            let (name_off, type_id, raw) = (u32_at(m, 0)?, u32_at(m, 4)?, u32_at(m, 8)?);
            // With kind_flag, the top 8 bits are a bitfield's size.
            let (bits, bitfield) = if t.kflag {
                (raw & 0xff_ffff, raw >> 24)
            } else {
                (raw, 0)
            };
            let name = self.name(name_off)?;
            if name == member.as_bytes() {
                if bitfield != 0 {
                    return Err(format!("member {member} is a {bitfield}-bit bitfield"));
                }
                return Ok(Some((base + bits, type_id)));
            }
            if name.is_empty() {
                let (inner_id, inner) = self.resolve_id(type_id)?;
                if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                    && let Some(found) = self.member(inner_id, member, base + bits, depth + 1)?
                {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }
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
mod tests;
