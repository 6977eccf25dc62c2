//! The server process and what it needs from the machine: an owner thread
//! that spawns, watches and reaps it, free loopback ports, random secrets.

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// How often the owner thread checks whether the server exited by itself.
const REAP_POLL: Duration = Duration::from_millis(50);

/// Ports of one server, chosen once and kept across restarts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ports {
    pub(super) rpc: u16,
    pub(super) s3: u16,
    pub(super) admin: u16,
}

/// A stopped server's loopback ports, held by sockets bound to them but not
/// listening: a client still meets "connection refused", as with no server,
/// but another test's `bind(127.0.0.1:0)` is not handed these ports while
/// the server is down (it skips ports in use), so the restarted server gets
/// them back instead of finding one taken by a stranger (which then answers,
/// or vanishes, in its place). With `SO_REUSEADDR`, as the server's own
/// sockets have it, so the connections the killed server left in TIME_WAIT
/// do not refuse the hold. Best effort: a port that cannot be held is not.
#[derive(Debug)]
pub(super) struct PortHold {
    /// Closed on drop, which gives the ports back.
    _sockets: Vec<std::os::fd::OwnedFd>,
}

impl PortHold {
    /// Holds each of `ports` that can be bound.
    pub(super) fn take(ports: Ports) -> PortHold {
        PortHold {
            _sockets: [ports.rpc, ports.s3, ports.admin]
                .into_iter()
                .filter_map(hold)
                .collect(),
        }
    }
}

/// A TCP socket bound to 127.0.0.1:`port` with SO_REUSEADDR, not listening.
fn hold(port: u16) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket calls on a descriptor we own; the address and
    // option values are valid for the sizes given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let set = libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
            },
            sin_zero: [0; 8],
        };
        let bound = libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        (set == 0 && bound == 0).then_some(fd)
    }
}

/// A running server process, owned by a thread of its own.
///
/// The thread spawns the child with `PR_SET_PDEATHSIG`, which fires when the
/// *spawning thread* ends; since that thread lives exactly as long as the
/// child, the server dies with us even if we are SIGKILLed (no orphans after
/// a killed test run), and it never dies early because a test thread ended.
/// Owning the `Child` in one thread also means kill and reap cannot race with
/// PID reuse.
#[derive(Debug)]
pub(super) struct Server {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Option<ExitStatus>>,
}

impl Server {
    pub(super) fn spawn(mut command: Command) -> Result<Server> {
        let (spawned_tx, spawned_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let parent = std::process::id();
        // SAFETY: the closure runs between fork and exec and only calls the
        // async-signal-safe prctl and getppid.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // We may have died before the prctl took effect.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("parent exited"));
                }
                Ok(())
            });
        }
        let thread = thread::Builder::new()
            .name("garage-server".to_owned())
            .spawn(move || {
                let mut child = match command.spawn() {
                    Ok(child) => child,
                    Err(err) => {
                        let _ = spawned_tx.send(Err(err));
                        return None;
                    }
                };
                let _ = spawned_tx.send(Ok(()));
                loop {
                    match stop_rx.recv_timeout(REAP_POLL) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            if let Ok(Some(status)) = child.try_wait() {
                                return Some(status);
                            }
                        }
                        // Asked to stop, or the Garage handle is gone.
                        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                            let _ = child.kill();
                            return child.wait().ok();
                        }
                    }
                }
            })
            .context("starting the garage owner thread")?;
        match spawned_rx.recv() {
            Ok(Ok(())) => Ok(Server {
                stop: stop_tx,
                thread,
            }),
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(err.into())
            }
            Err(_) => {
                let _ = thread.join();
                bail!("the garage owner thread ended before spawning")
            }
        }
    }

    /// Whether the server process has ended (the owner thread returns then).
    pub(super) fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Kills (if still running) and reaps; the exit status if known.
    pub(super) fn stop(self) -> Option<ExitStatus> {
        let _ = self.stop.send(());
        self.thread.join().ok().flatten()
    }
}

/// Three distinct free loopback ports, with their listeners still open.
pub(super) fn free_ports() -> Result<(Vec<TcpListener>, Ports)> {
    let listeners = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("binding a loopback port"))
        .collect::<Result<Vec<_>>>()?;
    let ports = listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .context("reading a bound port")
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((
        listeners,
        Ports {
            rpc: ports[0],
            s3: ports[1],
            admin: ports[2],
        },
    ))
}

/// `bytes` random bytes from the kernel, as lower-case hex.
pub(super) fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
