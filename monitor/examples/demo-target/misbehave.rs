//! The demo's faulty answers: a dump request answered the way a broken
//! service would (hang, trickle, close, garbage), so the monitor's handling
//! of each can be tested end to end. Switched by the `misbehave` command.

use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};

/// How `dump` is answered: real profiles, or one of the faults a broken
/// service shows, so the monitor's handling can be tested end to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehave {
    None,
    Hang,
    Trickle,
    Empty,
    Garbage,
    /// A valid gzip stream of this many MiB of incompressible bytes: the
    /// size of a big service's profile, for the streaming benchmark.
    Huge(u32),
    /// A real profile whose mappings name a build ID that is not this
    /// binary's, as a profile of another build would: the monitor must
    /// store it unsymbolized and say why.
    ForeignBuild,
}

pub static MISBEHAVE: Mutex<Misbehave> = Mutex::new(Misbehave::None);

/// How long a misbehaving reply may hold the (one-at-a-time) server.
pub const MISBEHAVE_LIMIT: Duration = Duration::from_secs(60);

/// Answers a dump request the way `mode` says a broken service would.
pub async fn misbehave(
    mode: Misbehave,
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) {
    use tokio::io::AsyncReadExt;
    match mode {
        Misbehave::None | Misbehave::Empty => {}
        // Wait for the client to give up and close its end.
        Misbehave::Hang => {
            let mut buf = [0u8; 64];
            while let Ok(1..) = reader.read(&mut buf).await {}
        }
        // The start of a gzip stream, a byte at a time, never finished.
        Misbehave::Trickle => {
            for byte in [0x1f_u8, 0x8b, 0x08, 0x00].into_iter().cycle() {
                if write.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Misbehave::Garbage => {
            let _ = write.write_all(b"this is not a heap profile\n").await;
        }
        Misbehave::Huge(mib) => {
            let _ = huge(mib, write).await;
        }
        Misbehave::ForeignBuild => {
            if let Ok(gz) = foreign_build().await {
                let _ = write.write_all(&gz).await;
            }
        }
    }
    let _ = write.shutdown().await;
}

/// Our real profile with every mapping's build ID replaced.
async fn foreign_build() -> anyhow::Result<Vec<u8>> {
    let gz = super::dump_pprof().await?;
    let mut profile = monitor::profile::decode_gz(&gz, 1 << 30)?;
    let foreign = profile.intern("00000000000000000000000000000000deadbeef");
    for m in &mut profile.mapping {
        m.build_id = foreign;
    }
    Ok(monitor::profile::encode_gz(&profile))
}

/// Sends `mib` MiB of pseudo-random bytes, gzipped without compression, a
/// chunk at a time (the demo never holds the whole reply either).
async fn huge(mib: u32, write: &mut tokio::net::unix::OwnedWriteHalf) -> std::io::Result<()> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for b in chunk.iter_mut() {
            // xorshift: incompressible enough, and cheap.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        gz.write_all(&chunk)?;
        write.write_all(gz.get_ref()).await?;
        gz.get_mut().clear();
    }
    let rest = gz.finish()?;
    write.write_all(&rest).await
}
