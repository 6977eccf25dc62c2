//! The eBPF object embedded at build time and typed access to its maps and
//! programs, each missing or mistyped one reported by name.

use aya::Ebpf;
use aya::programs::ProgramError;

use super::classify::classify;
use super::types::EbpfError;

/// The object built by `build.rs`; empty when built without the toolchain.
pub(super) static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));

/// Takes map `name` out of the object as a `T`.
pub(super) fn take_map<T>(ebpf: &mut Ebpf, name: &str) -> Result<T, EbpfError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or_else(|| EbpfError::Verifier {
        program: name.into(),
        log: format!("map {name} missing from the eBPF object"),
    })?;
    T::try_from(map).map_err(|e| classify(&format!("opening map {name}"), &e))
}

/// Program `name` of the object as a `T`.
pub(super) fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, EbpfError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or_else(|| EbpfError::Verifier {
        program: name.into(),
        log: format!("program {name} missing from the eBPF object"),
    })?;
    program
        .try_into()
        .map_err(|e: ProgramError| EbpfError::Verifier {
            program: name.into(),
            log: format!("unexpected program type: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::OBJECT;

    /// BPF helpers by id (`enum bpf_func_id`, include/uapi/linux/bpf.h) and
    /// the first kernel that has each (docs/ebpf.md lists the sources).
    const HELPERS: &[(i32, &str, (u32, u32))] = &[
        (1, "map_lookup_elem", (3, 18)),
        (5, "ktime_get_ns", (4, 1)),
        (14, "get_current_pid_tgid", (4, 2)),
        (113, "probe_read_kernel", (5, 5)),
        (120, "get_ns_current_pid_tgid", (5, 7)),
        (131, "ringbuf_reserve", (5, 8)),
        (132, "ringbuf_submit", (5, 8)),
        (133, "ringbuf_discard", (5, 8)),
        (184, "get_func_ret", (5, 17)),
    ];
    /// The oldest kernel the programs must load on: the ring buffer's (5.8).
    /// EKS's 5.10 and Ubuntu 20.04's 5.15 are above it; a helper newer than
    /// this would have the verifier reject its program there.
    const FLOOR: (u32, u32) = (5, 8);

    /// Every helper the programs call is known and no newer than [`FLOOR`].
    #[test]
    fn programs_call_no_helper_newer_than_the_floor() {
        if OBJECT.is_empty() {
            assert!(
                !testkit::guard::in_ci(),
                "CI=true but the eBPF object is a stub"
            );
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"\n!!! NOT RUN: the eBPF object was not built\n",
            );
            return;
        }
        let object = aya_obj::Object::parse(OBJECT).expect("the embedded object parses");
        let mut called = std::collections::BTreeSet::new();
        for (name, program) in &object.programs {
            let function = &object.functions[&program.function_key()];
            // BPF_JMP | BPF_CALL with src_reg 0 calls a helper (1 is a
            // bpf-to-bpf call, 2 a kfunc); imm is the helper id.
            for insn in &function.instructions {
                if insn.code == 0x85 && insn.src_reg() == 0 {
                    called.insert((insn.imm, name.clone()));
                }
            }
        }
        assert!(
            !called.is_empty(),
            "no helper calls found: the scan is broken"
        );
        for (id, program) in called {
            let Some((_, helper, since)) = HELPERS.iter().find(|(h, _, _)| *h == id) else {
                panic!(
                    "{program} calls helper {id}, missing from HELPERS: add it with its first kernel"
                );
            };
            assert!(
                *since <= FLOOR,
                "{program} calls bpf_{helper} (kernel {}.{}+), newer than the {}.{} floor",
                since.0,
                since.1,
                FLOOR.0,
                FLOOR.1
            );
        }
    }
}
