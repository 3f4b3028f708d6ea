//! A Bedrock provider from the catalog's `[providers.*]` settings.

use super::sigv4::auth::{Credentials, CredentialsSource, SigV4Auth};
use super::Bedrock;
use crate::provider::Provider;

/// The Bedrock-specific settings of a `kind = "bedrock"` provider.
#[derive(Debug, Clone, Default)]
pub(crate) struct BedrockSettings {
    /// The AWS region (required).
    pub(crate) region: Option<String>,
    /// Environment variables holding a key pair (and a session token).
    pub(crate) access_key_id_env: Option<String>,
    pub(crate) secret_access_key_env: Option<String>,
    pub(crate) session_token_env: Option<String>,
    /// A profile of the shared credentials file.
    pub(crate) profile: Option<String>,
    /// The shared credentials file (default `AWS_SHARED_CREDENTIALS_FILE`, else
    /// `~/.aws/credentials`).
    pub(crate) credentials_file: Option<String>,
}

impl BedrockSettings {
    /// Whether any Bedrock-only setting is present (they are refused on other kinds).
    pub(crate) fn any(&self) -> bool {
        self.region.is_some()
            || self.access_key_id_env.is_some()
            || self.secret_access_key_env.is_some()
            || self.session_token_env.is_some()
            || self.profile.is_some()
    }

    /// The base URL when the config gives none.
    pub(crate) fn default_base_url(&self) -> Option<String> {
        self.region.as_deref().map(Bedrock::default_base_url)
    }

    /// `provider` with the SigV4 signer. Credentials: the configured key pair
    /// (`access_key_id_env` and `secret_access_key_env`, read now), else a configured
    /// `profile` / `credentials_file`, else `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
    /// (read per request), else the shared credentials file's `AWS_PROFILE` (or `default`)
    /// profile. Errors name the field, never a secret.
    pub(crate) fn apply(
        &self,
        provider: Provider,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Provider, String> {
        let Some(region) = self.region.as_deref() else {
            return Err("region: required for kind = \"bedrock\"".into());
        };
        if region.is_empty()
            || region.len() > 64
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("region: must be an AWS region name like `us-east-1`".into());
        }
        let var = |field: &str, name: &str| {
            env(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| format!("{field}: `{name}` is not set"))
        };
        let source = match (&self.access_key_id_env, &self.secret_access_key_env) {
            (Some(id), Some(secret)) => {
                let token = match &self.session_token_env {
                    Some(t) => Some(var("session_token_env", t)?),
                    None => None,
                };
                CredentialsSource::Static(Credentials::new(
                    &var("access_key_id_env", id)?,
                    &var("secret_access_key_env", secret)?,
                    token.as_deref(),
                ))
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(
                    "access_key_id_env: set both `access_key_id_env` and `secret_access_key_env`"
                        .into(),
                )
            }
            (None, None) => {
                let loaded = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                    (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Some(
                        Credentials::new(&id, &secret, env("AWS_SESSION_TOKEN").as_deref()),
                    ),
                    _ => None,
                };
                if self.profile.is_none() && self.credentials_file.is_none() && loaded.is_some() {
                    CredentialsSource::Environment(loaded)
                } else {
                    let path = self
                        .credentials_file
                        .clone()
                        .or_else(|| env("AWS_SHARED_CREDENTIALS_FILE").filter(|p| !p.is_empty()))
                        .or_else(|| {
                            env("HOME")
                                .filter(|h| !h.is_empty())
                                .map(|h| format!("{h}/.aws/credentials"))
                        })
                        .ok_or("credentials_file: no AWS credentials found (set AWS_ACCESS_KEY_ID, a profile, or credentials_file)")?;
                    let profile = self
                        .profile
                        .clone()
                        .or_else(|| env("AWS_PROFILE").filter(|p| !p.is_empty()))
                        .unwrap_or_else(|| "default".to_owned());
                    CredentialsSource::profile(path, profile)
                }
            }
        };
        Ok(provider
            .with_codec(Bedrock)
            .with_auth(SigV4Auth::bedrock(region, source)))
    }
}
