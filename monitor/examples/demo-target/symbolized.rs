//! `--symbolized`: the demo resolves its own profile before answering, as
//! services did with jemalloc_pprof's `symbolize` feature (the backtrace
//! crate, loading the binary's debug info into this process's heap). The
//! monitor then finds nothing left to symbolize; tests and the benchmark
//! compare it with the default, unsymbolized answer.

use std::ffi::{CStr, c_int, c_void};

use anyhow::Context;
use monitor::profile::{decode_gz, encode_gz};
use monitor::symbolize::{Frame, write_frames};

/// Load bias and file name of every loaded object (the executable's name is "").
fn loaded_objects() -> Vec<(u64, String)> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for the call, and data
        // is the Vec handed in below.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<(u64, String)>)) };
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: a NUL-terminated string owned by the loader.
            unsafe { CStr::from_ptr(info.dlpi_name) }
                .to_string_lossy()
                .into_owned()
        };
        out.push((info.dlpi_addr, name));
        0
    }
    let mut out: Vec<(u64, String)> = Vec::new();
    // SAFETY: the callback only reads what the loader passes and pushes to `out`.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut out as *mut _ as *mut c_void) };
    out
}

/// Symbolizes an unsymbolized jemalloc_pprof profile in this process.
pub fn symbolize_here(gz: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut profile = decode_gz(gz, 1 << 30).context("decoding our own profile")?;
    let objects = loaded_objects();
    let exe_bias = objects.first().map_or(0, |o| o.0);
    let mut resolved = Vec::new();
    for (i, loc) in profile.location.iter().enumerate() {
        // jemalloc_pprof writes ELF virtual addresses; the process address
        // adds the object's load bias. Without a mapping it is already one.
        let address = match profile.mapping.iter().find(|m| m.id == loc.mapping_id) {
            Some(m) => {
                let file = profile.string(m.filename);
                let bias = objects
                    .iter()
                    .find(|(_, name)| !name.is_empty() && name == file)
                    .map_or(exe_bias, |o| o.0);
                loc.address.wrapping_add(bias)
            }
            None => loc.address,
        };
        let mut frames = Vec::new();
        backtrace::resolve(address as *mut c_void, |symbol| {
            if let Some(name) = symbol.name() {
                frames.push(Frame {
                    name: format!("{name:#}"),
                    file: symbol
                        .filename()
                        .map(|f| f.display().to_string())
                        .unwrap_or_default(),
                    line: symbol.lineno().unwrap_or(0),
                });
            }
        });
        if !frames.is_empty() {
            resolved.push((i, frames));
        }
    }
    write_frames(&mut profile, resolved);
    Ok(encode_gz(&profile))
}
