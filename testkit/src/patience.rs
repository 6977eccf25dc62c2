//! The rig's waits, stretched where the machine is known to be slow.
//!
//! The VM stage (`cargo xtask vm`) runs the integration tests under QEMU
//! emulation on a shared machine, several times slower than the host: a
//! demo target's first dump took 9 s there idle and 27 s under load. The
//! guest sets [`SCALE_ENV`] and every wait of the rig (the monitor's log,
//! the bucket, the Slack stand-in, the demo's and Garage's start) is
//! multiplied by it. Waits are bounds on "it happened", never claims about
//! speed, so stretching them changes no verdict, only how long a failure
//! takes to be reported.

use std::time::Duration;

/// Environment variable: the factor (1 to 20) the rig's waits are multiplied by.
pub const SCALE_ENV: &str = "TESTKIT_TIMEOUT_SCALE";

/// `timeout` times [`SCALE_ENV`] (1 when unset or not a number in 1..=20).
pub fn stretch(timeout: Duration) -> Duration {
    let scale = std::env::var(SCALE_ENV).ok();
    timeout.mul_f64(parse_scale(scale.as_deref()))
}

fn parse_scale(value: Option<&str>) -> f64 {
    value
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| (1.0..=20.0).contains(s))
        .unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_is_read_within_bounds() {
        assert_eq!(parse_scale(None), 1.0);
        assert_eq!(parse_scale(Some("4")), 4.0);
        assert_eq!(parse_scale(Some(" 2.5 ")), 2.5);
        for bad in ["", "fast", "0", "0.5", "-3", "100", "NaN"] {
            assert_eq!(parse_scale(Some(bad)), 1.0, "{bad}");
        }
    }
}
