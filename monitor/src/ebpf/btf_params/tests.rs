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

/// Builds BTF blobs whose trailers carry real values (names, type ids,
/// member offsets), for the tracepoint and struct readers.
#[derive(Default)]
struct Builder {
    strings: Vec<u8>,
    section: Vec<u8>,
}

impl Builder {
    /// Offset of `name` in the string section (0 for the empty name).
    fn name(&mut self, name: &str) -> u32 {
        if self.strings.is_empty() {
            self.strings.push(0);
        }
        if name.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        off
    }

    /// Appends a type (ids count from 1 in the order added).
    fn add(&mut self, kind: u32, kflag: bool, name: &str, size_or_type: u32, trailer: &[u32]) {
        let vlen = match kind {
            KIND_STRUCT | KIND_UNION => trailer.len() / 3,
            KIND_FUNC_PROTO => trailer.len() / 2,
            _ => 0,
        } as u32;
        let name_off = self.name(name);
        let info = (u32::from(kflag) << 31) | (kind << 24) | vlen;
        for word in [name_off, info, size_or_type].iter().chain(trailer) {
            self.section.extend_from_slice(&word.to_ne_bytes());
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.name("");
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_ne_bytes());
        out.extend_from_slice(&[1, 0]);
        let (types, strings) = (self.section.len() as u32, self.strings.len() as u32);
        for word in [24u32, 0, types, types, strings] {
            out.extend_from_slice(&word.to_ne_bytes());
        }
        out.extend(self.section);
        out.extend(self.strings);
        out
    }
}

/// `btf_trace_mark_victim` as older kernels declare it:
/// `void (*)(void *, int pid)`.
fn btf_6_1() -> Vec<u8> {
    let mut b = Builder::default();
    let pid = b.name("pid");
    b.add(KIND_INT, false, "int", 4, &[32]); // 1
    b.add(KIND_PTR, false, "", 0, &[]); // 2: void *
    b.add(KIND_FUNC_PROTO, false, "", 0, &[0, 2, pid, 1]); // 3
    b.add(KIND_PTR, false, "", 3, &[]); // 4
    b.add(KIND_TYPEDEF, false, "btf_trace_mark_victim", 4, &[]); // 5
    b.finish()
}

/// As newer kernels declare it: `void (*)(void *, struct task_struct *, uid_t)`,
/// with a task_struct whose `tgid` sits in an anonymous union, behind a
/// const pid_t, and a forward declaration of the struct first.
fn btf_6_8() -> Vec<u8> {
    let mut b = Builder::default();
    let (state, pid, tgid, flags, task, uid, ptr) = (
        b.name("__state"),
        b.name("pid"),
        b.name("tgid"),
        b.name("flags"),
        b.name("task"),
        b.name("uid"),
        b.name("stack"),
    );
    b.add(7, false, "task_struct", 0, &[]); // 1: FWD
    b.add(KIND_INT, false, "int", 4, &[32]); // 2
    b.add(KIND_PTR, false, "", 0, &[]); // 3: void *
    b.add(KIND_TYPEDEF, false, "pid_t", 2, &[]); // 4
    let members = [state, 2, 0, 0, 6, 64, pid, 4, 128, ptr, 3, 192];
    b.add(KIND_STRUCT, false, "task_struct", 32, &members); // 5
    b.add(KIND_UNION, false, "", 8, &[tgid, 7, 0, flags, 2, 0]); // 6
    b.add(10, false, "", 4, &[]); // 7: const pid_t
    b.add(KIND_PTR, false, "", 5, &[]); // 8: struct task_struct *
    b.add(KIND_TYPEDEF, false, "uid_t", 2, &[]); // 9
    b.add(KIND_FUNC_PROTO, false, "", 0, &[0, 3, task, 8, uid, 9]); // 10
    b.add(KIND_PTR, false, "", 10, &[]); // 11
    b.add(KIND_TYPEDEF, false, "btf_trace_mark_victim", 11, &[]); // 12
    // A struct with a bitfield (kind_flag: size 3 in the top byte) and a
    // member that is not byte-aligned.
    let (bits, odd) = (b.name("bits"), b.name("odd"));
    b.add(
        KIND_STRUCT,
        true,
        "packed",
        8,
        &[bits, 2, (3 << 24) | 40, odd, 2, 12],
    ); // 13
    b.finish()
}

#[test]
fn reads_what_the_mark_victim_tracepoint_passes() {
    let args = tracepoint_args(&btf_6_1(), "mark_victim").unwrap();
    assert_eq!(args, Some(vec![ArgType::Int { size: 4 }]));
    let args = tracepoint_args(&btf_6_8(), "mark_victim").unwrap();
    assert_eq!(
        args,
        Some(vec![
            ArgType::StructPtr("task_struct".into()),
            ArgType::Int { size: 4 }
        ])
    );
    // A kernel without the tracepoint: absent, not an error.
    assert_eq!(tracepoint_args(&btf_6_8(), "other").unwrap(), None);
    assert!(tracepoint_args(&[], "mark_victim").is_err());
}

#[test]
fn finds_struct_fields_through_anonymous_members_and_typedefs() {
    let btf = btf_6_8();
    // tgid: in the anonymous union at bit 64, behind const pid_t.
    assert_eq!(
        int_field(&btf, "task_struct", "tgid"),
        Ok(Field { offset: 8, size: 4 })
    );
    assert_eq!(
        int_field(&btf, "task_struct", "pid"),
        Ok(Field {
            offset: 16,
            size: 4
        })
    );
    let refused = [
        ("task_struct", "comm", "no member comm"),
        ("task_struct", "stack", "not an integer"),
        ("mm_struct", "pid", "no struct mm_struct"),
        ("packed", "bits", "3-bit bitfield"),
        ("packed", "odd", "not byte-aligned"),
    ];
    for (name, member, why) in refused {
        let e = int_field(&btf, name, member).unwrap_err();
        assert!(e.contains(why), "{name}.{member}: {e}");
    }
    // The older kernel's blob has no task_struct at all.
    assert!(int_field(&btf_6_1(), "task_struct", "tgid").is_err());
}
