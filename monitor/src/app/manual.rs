//! Manual dumps: a request from `memory-monitor dump` on the control socket
//! is checked ([`ManualGate`]: a target, no capture in flight, the manual
//! cooldown), started as a capture with reason `manual`, and answered when
//! that capture ends, with the dump's key or the error. From the slot on it
//! is a dump like any other: spooled, stored, symbolized, analysed, alerted.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::Monitor;
use crate::capture::Request;
use crate::control::{
    ControlReply, ControlRequest, ControlServer, Incoming, ManualGate, Responder, Situation,
    socket_path,
};
use crate::dump::{Reason, Trigger};

/// The control socket and the one manual capture it may be waiting for.
#[derive(Debug, Default)]
pub(super) struct Manual {
    /// None when the socket could not be set up (logged; the monitor runs on).
    server: Option<ControlServer>,
    gate: ManualGate,
    /// The client waiting for the manual capture in flight.
    waiting: Option<Responder>,
}

impl Manual {
    /// Listens on the control socket of the spool at `spool_dir`; a failure
    /// is logged and leaves the monitor without manual dumps.
    pub fn start(spool_dir: &Path) -> Manual {
        let path = socket_path(spool_dir);
        let server = match ControlServer::bind(&path) {
            Ok(server) => {
                info!(socket = %path.display(), "control socket listening (memory-monitor dump)");
                Some(server)
            }
            Err(e) => {
                warn!(error = %e, "no control socket: memory-monitor dump cannot reach this monitor");
                None
            }
        };
        Manual {
            server,
            ..Manual::default()
        }
    }

    /// The next request; never resolves without a socket. Cancel-safe.
    pub async fn next(&mut self) -> Incoming {
        match self.server.as_mut() {
            Some(server) => server.next().await,
            None => std::future::pending().await,
        }
    }
}

impl Monitor {
    /// A request on the control socket: refused with why, or a manual
    /// capture started (answered by [`Monitor::manual_done`]).
    pub(super) fn on_control(&mut self, incoming: Incoming) {
        let Incoming { request, reply } = incoming;
        let ControlRequest::Dump { note } = request;
        let now = Instant::now();
        let situation = Situation {
            binary: &self.binary,
            target: self.sampler.target(),
            busy: self.slot.busy(),
            opens_in: (!self.slot.is_open(now)).then_some(Duration::from_secs(1)),
        };
        let target = match self.manual.gate.check(now, situation) {
            Ok(target) => target,
            Err(refusal) => {
                if let ControlReply::Refused { why, .. } = &refusal {
                    info!(why = %why, "manual dump refused");
                }
                reply.send(refusal);
                return;
            }
        };
        let stats = self
            .detector
            .stats(self.sampler.rss_anon(target), self.history.last_pressure);
        warn!(
            pid = target.pid,
            note = note.as_deref().unwrap_or(""),
            "manual dump asked for (memory-monitor dump)"
        );
        self.manual.waiting = Some(reply);
        self.slot.start(Request {
            reason: Reason::Manual,
            trigger: Trigger::Manual,
            stats,
            target,
            mode: self.sampler.sampling(),
            chart: None,
            note,
        });
    }

    /// The manual capture ended: its key, or why there is none, goes to the
    /// waiting client; the manual cooldown starts either way.
    pub(super) fn manual_done(&mut self, outcome: Result<String, String>) {
        self.manual.gate.ended(Instant::now());
        let Some(reply) = self.manual.waiting.take() else {
            return;
        };
        reply.send(match outcome {
            Ok(key) => ControlReply::Dumped { key },
            Err(why) => ControlReply::Failed { why },
        });
    }
}
