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
