//! `auth.test`: whether the token is valid, and which scopes it carries (the
//! `x-oauth-scopes` response header), for `memory-monitor check`. One
//! attempt, no retries: a human is waiting for the answer.

use serde_json::Value;

use super::client::SlackNotifier;
use super::error::{Failure, NotifyError};

/// The method.
const AUTH_TEST: &str = "auth.test";
/// The header Slack lists a token's scopes in, comma-separated.
const SCOPES_HEADER: &str = "x-oauth-scopes";

/// What `auth.test` said about the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The workspace (`team`).
    pub team: String,
    /// The bot user's name (`user`).
    pub user: String,
    /// The scopes from `x-oauth-scopes`; None when the header is absent.
    pub scopes: Option<Vec<String>>,
}

/// The scopes of an `x-oauth-scopes` value (pure).
pub fn parse_scopes(header: &str) -> Vec<String> {
    header
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl SlackNotifier {
    /// Calls `auth.test` once with the token.
    pub async fn auth_test(&self) -> Result<TokenInfo, NotifyError> {
        let shown = self.shown_url(AUTH_TEST);
        let timeout = self.settings().timeout;
        let fail = |failure: Failure| failure.into_error(AUTH_TEST, shown.clone(), "", timeout, 1);
        let response = self
            .client
            .post(self.url(AUTH_TEST))
            .bearer_auth(&self.settings().token)
            .send()
            .await
            .map_err(|e| fail(self.classify(e)))?;
        let status = response.status();
        let scopes = response
            .headers()
            .get(SCOPES_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(parse_scopes);
        let bytes = response.bytes().await.map_err(|e| fail(self.classify(e)))?;
        if status.as_u16() == 429 {
            return Err(fail(Failure::RateLimited(None)));
        }
        if !status.is_success() {
            return Err(fail(Failure::Status {
                status: status.as_u16(),
                body: self.snippet(&bytes),
            }));
        }
        let bad = || {
            fail(Failure::BadResponse {
                status: status.as_u16(),
                body: self.snippet(&bytes),
            })
        };
        let reply: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        match reply["ok"].as_bool() {
            Some(true) => {}
            Some(false) => {
                let code = reply["error"].as_str().unwrap_or("unknown_error");
                return Err(fail(Failure::OkFalse(code.to_string())));
            }
            None => return Err(bad()),
        }
        let field = |name: &str| reply[name].as_str().unwrap_or_default().to_string();
        Ok(TokenInfo {
            team: field("team"),
            user: field("user"),
            scopes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_split_and_trimmed() {
        assert_eq!(
            parse_scopes("chat:write, files:write,,channels:read "),
            ["chat:write", "files:write", "channels:read"]
        );
        assert!(parse_scopes("").is_empty());
    }
}
