//! Where and as whom alerts are posted: the Slack settings and the routing of
//! an environment to its channel. Kept apart from the message and the client
//! so both can depend on it without depending on each other.

use std::fmt;
use std::time::Duration;

/// Where Slack's Web API lives unless configured otherwise.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";
/// How long one `chat.postMessage` attempt may take, connect to last byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per alert, the first one included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Slack settings, normally read from the environment by `config`.
///
/// `Debug` prints the token as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SlackSettings {
    /// Bot token (`xoxb-…`), sent as `Authorization: Bearer <token>`.
    pub token: String,
    /// Web API base URL without the method name, e.g. [`DEFAULT_API_URL`].
    pub api_url: String,
    /// Channel override; empty means route by environment with [`channel_for`].
    pub channel: String,
    /// ENVIRONMENT (`prod`, `staging`, `shadow`, …); named in the message and
    /// used for routing.
    pub environment: String,
    /// NETWORK the target serves, named in the message.
    pub network: String,
    /// Bound on one attempt, connect to last byte.
    pub timeout: Duration,
    /// Attempts per alert, the first included; 0 is treated as 1.
    pub max_attempts: u32,
    /// SLACK_CHART: post the chart of the memory curve in the alert's
    /// thread (needs the `files:write` scope).
    pub chart: bool,
}

impl SlackSettings {
    /// Settings with the default API URL, timeout and attempts, routed by environment.
    pub fn new(
        token: impl Into<String>,
        environment: impl Into<String>,
        network: impl Into<String>,
    ) -> Self {
        SlackSettings {
            token: token.into(),
            api_url: DEFAULT_API_URL.to_string(),
            channel: String::new(),
            environment: environment.into(),
            network: network.into(),
            timeout: DEFAULT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            chart: true,
        }
    }

    /// The channel alerts go to: the override if set, else [`channel_for`] the environment.
    pub fn effective_channel(&self) -> &str {
        let explicit = self.channel.trim();
        if explicit.is_empty() {
            channel_for(&self.environment)
        } else {
            explicit
        }
    }
}

impl fmt::Debug for SlackSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackSettings")
            .field("token", &"[redacted]")
            .field("api_url", &redact_url(&self.api_url))
            .field("channel", &self.channel)
            .field("environment", &self.environment)
            .field("network", &self.network)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("chart", &self.chart)
            .finish()
    }
}

/// `url` with any credentials in it (`https://user:secret@host/…`) replaced
/// by `[redacted]`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://[redacted]{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// The channel for an ENVIRONMENT: `prod` → `alerts-prod`; `staging` or
/// `shadow` → `alerts-barn`; anything else → `alerts-temp`.
pub fn channel_for(environment: &str) -> &'static str {
    match environment.trim() {
        "prod" => "alerts-prod",
        "staging" | "shadow" => "alerts-barn",
        _ => "alerts-temp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_are_redacted() {
        assert_eq!(
            redact_url("https://bot:s3cret@proxy.example:8443/api?x=a@b"),
            "https://[redacted]@proxy.example:8443/api?x=a@b"
        );
        assert_eq!(redact_url("https://slack.com/api"), "https://slack.com/api");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn channels_route_by_environment() {
        assert_eq!(channel_for("prod"), "alerts-prod");
        assert_eq!(channel_for("staging"), "alerts-barn");
        assert_eq!(channel_for("shadow"), "alerts-barn");
        assert_eq!(channel_for("dev"), "alerts-temp");
        assert_eq!(channel_for(""), "alerts-temp");
        assert_eq!(channel_for("production"), "alerts-temp");
    }
}
