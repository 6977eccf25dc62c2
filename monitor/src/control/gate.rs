//! Whether a manual dump may start now (pure, time as input): a target to
//! ask, the monitor's start second over, no capture in flight, and the
//! manual cooldown over, so a loop of `memory-monitor dump` cannot hammer
//! the service.
//!
//! A request while a capture is in flight is refused rather than queued:
//! the capture in flight is itself a fresh dump of the same heap (stored and
//! alerted as usual), the slot's one waiting place belongs to near-OOM dumps
//! (the kill may be seconds away), and a client told "retry in 5 s" holds
//! nothing in the monitor while it waits.

use std::time::Duration;

use tokio::time::Instant;

use super::protocol::ControlReply;
use crate::dump::Reason;
use crate::procfs::ProcessId;
use crate::units::human_duration;

/// Shortest time between the end of one manual capture and the start of the
/// next: a dump costs the service a pause and the store an object.
pub const MANUAL_COOLDOWN: Duration = Duration::from_secs(10);
/// What a client is told to wait when another capture is in flight: captures
/// of a healthy target take a second or two.
const BUSY_RETRY: Duration = Duration::from_secs(5);

/// The monitor's state as far as a manual dump cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation<'a> {
    /// BINARY_NAME, for the "no target" answer.
    pub binary: &'a str,
    /// The target process being watched, if any.
    pub target: Option<ProcessId>,
    /// The reason of the capture in flight, if any.
    pub busy: Option<Reason>,
    /// How long until the start-second gate opens (None once open).
    pub opens_in: Option<Duration>,
}

/// The manual cooldown: when the last manual capture ended.
#[derive(Debug, Clone)]
pub struct ManualGate {
    cooldown: Duration,
    last_end: Option<Instant>,
}

impl Default for ManualGate {
    fn default() -> Self {
        ManualGate::new(MANUAL_COOLDOWN)
    }
}

impl ManualGate {
    /// A gate with `cooldown` between manual captures.
    pub fn new(cooldown: Duration) -> Self {
        ManualGate {
            cooldown,
            last_end: None,
        }
    }

    /// The target to ask when a manual capture may start at `now`;
    /// otherwise the refusal to send, saying why and when to try again.
    pub fn check(&self, now: Instant, s: Situation) -> Result<ProcessId, ControlReply> {
        let refuse = |why: String, wait: Option<Duration>| ControlReply::Refused {
            why,
            retry_after_secs: wait.map(whole_secs),
        };
        let Some(target) = s.target else {
            return Err(refuse(
                format!(
                    "no target: no process named {:?} (BINARY_NAME) is running; the monitor looks for it at every CHECK_INTERVAL (its log says why none matches)",
                    s.binary
                ),
                None,
            ));
        };
        if let Some(left) = self.cooling_down(now) {
            return Err(refuse(
                format!(
                    "manual dumps are at least {} apart, so a loop cannot hammer the service; try again in {}s",
                    human_duration(self.cooldown),
                    whole_secs(left)
                ),
                Some(left),
            ));
        }
        if let Some(wait) = s.opens_in {
            return Err(refuse(
                "the monitor is in its first second (a previous run may have used this second's keys)".into(),
                Some(wait),
            ));
        }
        if let Some(reason) = s.busy {
            let what = if reason == Reason::Manual {
                "another manual dump is being captured".to_string()
            } else {
                format!(
                    "a {reason} dump is being captured right now (it is stored and alerted as usual)"
                )
            };
            return Err(refuse(
                format!("{what}; one capture runs at a time: try again in a few seconds"),
                Some(BUSY_RETRY),
            ));
        }
        Ok(target)
    }

    /// A manual capture ended at `now`, with or without a dump: the
    /// cooldown starts (a failing target must not be asked in a loop either).
    pub fn ended(&mut self, now: Instant) {
        self.last_end = Some(now);
    }

    fn cooling_down(&self, now: Instant) -> Option<Duration> {
        let end = self.last_end? + self.cooldown;
        end.checked_duration_since(now).filter(|d| !d.is_zero())
    }
}

/// Whole seconds, rounded up: "retry in 0 s" would be a lie.
fn whole_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: ProcessId = ProcessId {
        pid: 42,
        start_time: 7,
    };

    fn ready() -> Situation<'static> {
        Situation {
            binary: "svc",
            target: Some(TARGET),
            busy: None,
            opens_in: None,
        }
    }

    fn refusal(r: Result<ProcessId, ControlReply>) -> (String, Option<u64>) {
        match r {
            Err(ControlReply::Refused {
                why,
                retry_after_secs,
            }) => (why, retry_after_secs),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_ready_monitor_accepts_and_the_cooldown_runs_from_the_end() {
        let t0 = Instant::now();
        let mut gate = ManualGate::new(Duration::from_secs(10));
        assert_eq!(gate.check(t0, ready()), Ok(TARGET));
        gate.ended(t0 + Duration::from_secs(3));
        let (why, retry) = refusal(gate.check(t0 + Duration::from_millis(5500), ready()));
        assert_eq!(retry, Some(8), "7.5 s left rounds up");
        assert!(why.contains("at least 10s apart"), "{why}");
        assert!(why.contains("try again in 8s"), "{why}");
        assert_eq!(
            gate.check(t0 + Duration::from_secs(13), ready()),
            Ok(TARGET)
        );
    }

    #[test]
    fn without_a_target_waiting_does_not_help() {
        let s = Situation {
            target: None,
            ..ready()
        };
        let (why, retry) = refusal(ManualGate::default().check(Instant::now(), s));
        assert!(why.starts_with("no target"), "{why}");
        assert!(why.contains("\"svc\""), "{why}");
        assert_eq!(retry, None);
    }

    #[test]
    fn a_capture_in_flight_is_not_queued_behind() {
        let s = Situation {
            busy: Some(Reason::Spike),
            ..ready()
        };
        let (why, retry) = refusal(ManualGate::default().check(Instant::now(), s));
        assert!(why.contains("a spike dump is being captured"), "{why}");
        assert_eq!(retry, Some(5));
        let s = Situation {
            busy: Some(Reason::Manual),
            ..ready()
        };
        let (why, _) = refusal(ManualGate::default().check(Instant::now(), s));
        assert!(why.contains("another manual dump"), "{why}");
    }

    #[test]
    fn the_start_second_is_waited_out() {
        let s = Situation {
            opens_in: Some(Duration::from_millis(300)),
            ..ready()
        };
        let (why, retry) = refusal(ManualGate::default().check(Instant::now(), s));
        assert!(why.contains("first second"), "{why}");
        assert_eq!(retry, Some(1));
    }
}
