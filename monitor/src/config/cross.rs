//! Checks of settings against each other (and against the kernel's limits),
//! run once every single value has parsed, so their problems are listed with
//! the others in one [`super::ConfigErrors`].

use std::path::Path;

use crate::capture::socket_path;
use crate::units::human_bytes;

/// The most samples HISTORY_WINDOW_SIZE may hold. The window is allocated
/// up front and copied and sorted for its percentiles on every sample (up to
/// 20 a second in eBPF mode); 10 000 samples is 80 KiB and well under a
/// millisecond per sort, and already spans 28 hours at the default 10 s
/// interval. The leak rule is armed only once the window is full, so a
/// longer window would leave it off for days after every restart.
pub const MAX_WINDOW_SIZE: usize = 10_000;

/// Longest socket path a Unix socket address holds: `sun_path` is 108 bytes
/// on Linux, and the path needs its terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// A spooled dump is never dropped to make room for itself, so a spool
/// smaller than the largest dump accepted could end up holding one dump over
/// its bound; better refused at start.
pub(super) fn spool_holds_a_dump(spool_max: u64, dump_max: u64) -> Result<(), String> {
    if spool_max >= dump_max {
        return Ok(());
    }
    Err(format!(
        "SPOOL_MAX_SIZE ({}, {spool_max} bytes) is below DUMP_MAX_SIZE ({}, {dump_max} bytes): \
         the spool could not hold the largest dump accepted; raise SPOOL_MAX_SIZE or lower DUMP_MAX_SIZE",
        human_bytes(spool_max),
        human_bytes(dump_max),
    ))
}

/// The target's socket path (`<dir>/heap_dump_<binary>.sock`) must fit a
/// Unix socket address, or every capture would fail with an obscure EINVAL.
pub(super) fn socket_path_fits(dir: &Path, binary: &str) -> Result<(), String> {
    let path = socket_path(dir, binary);
    let len = path.as_os_str().len();
    if len <= MAX_SOCKET_PATH {
        return Ok(());
    }
    Err(format!(
        "HEAP_DUMP_SOCKET_DIR and BINARY_NAME make the socket path {} ({len} bytes), over the \
         {MAX_SOCKET_PATH} bytes a Unix socket address holds (sun_path is 108 bytes with its NUL); \
         use a shorter HEAP_DUMP_SOCKET_DIR",
        path.display()
    ))
}

/// HISTORY_WINDOW_SIZE as a whole number from 1 to [`MAX_WINDOW_SIZE`].
pub(super) fn window_size(v: &str) -> Result<std::num::NonZeroUsize, String> {
    let n: usize = super::checks::positive(v)?;
    if n > MAX_WINDOW_SIZE {
        return Err(format!(
            "at most {MAX_WINDOW_SIZE} samples (the leak rule waits for a full window, and \
             every sample sorts it)"
        ));
    }
    std::num::NonZeroUsize::new(n).ok_or_else(|| "must be above zero".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spool_must_hold_the_largest_dump() {
        assert!(spool_holds_a_dump(64 << 20, 64 << 20).is_ok());
        assert!(spool_holds_a_dump(1 << 30, 64 << 20).is_ok());
        let err = spool_holds_a_dump(4096, 64 << 20).unwrap_err();
        for needle in [
            "SPOOL_MAX_SIZE (4.0 KiB",
            "DUMP_MAX_SIZE (64.0 MiB",
            "67108864",
        ] {
            assert!(err.contains(needle), "{needle:?} missing in {err}");
        }
    }

    #[test]
    fn the_socket_path_must_fit_sun_path() {
        // "/heap_dump_" + ".sock" is 16 bytes around the name.
        let name = "svc";
        let fits = format!("/{}", "d".repeat(MAX_SOCKET_PATH - 16 - name.len() - 1));
        assert_eq!(socket_path(Path::new(&fits), name).as_os_str().len(), 107);
        assert!(socket_path_fits(Path::new(&fits), name).is_ok());
        let over = format!("{fits}d");
        let err = socket_path_fits(Path::new(&over), name).unwrap_err();
        assert!(err.contains("(108 bytes)"), "{err}");
        assert!(err.contains("HEAP_DUMP_SOCKET_DIR"), "{err}");
        assert!(err.contains(&format!("{over}/heap_dump_svc.sock")), "{err}");
        assert!(socket_path_fits(Path::new("/tmp"), "my-service").is_ok());
    }

    #[test]
    fn the_window_is_bounded() {
        assert_eq!(window_size("1").unwrap().get(), 1);
        assert_eq!(window_size("10000").unwrap().get(), MAX_WINDOW_SIZE);
        assert!(window_size("10001").unwrap_err().contains("at most 10000"));
        assert!(window_size("0").unwrap_err().contains("above zero"));
        assert!(window_size("18446744073709551615").is_err());
    }
}
