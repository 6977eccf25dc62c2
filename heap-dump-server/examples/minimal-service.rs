//! A minimal service serving heap dumps:
//! `cargo run -p heap-dump-server --example minimal-service [-- <socket dir>]`
//! serves `/tmp/heap_dump_minimal-service.sock` (or in `<socket dir>`).
//!
//! It defines no `malloc_conf` symbol, so the environment decides whether
//! jemalloc profiles: run it with `MALLOC_CONF=prof:true,prof_active:true`
//! for real dumps; without, it logs how to turn profiling on and `dump`
//! answers that error.

// Every allocation through jemalloc, so the profile sees them all.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut options = heap_dump_server::Options::new();
    if let Some(dir) = std::env::args_os().nth(1) {
        options = options.dir(dir);
    }
    // The one call (heap_dump_server::spawn_thread without tokio).
    let server = heap_dump_server::tokio::spawn(options)?;

    let work = the_services_own_work();

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(work);
    // Stops serving and removes the socket.
    server.shutdown();
    Ok(())
}

/// The service's own work: 8 MiB kept, so a profile has something to show
/// (never inlined: tests look for its name in the symbolized profile).
#[inline(never)]
fn the_services_own_work() -> Vec<Vec<u8>> {
    (0..8).map(|i| vec![i as u8; 1 << 20]).collect()
}
