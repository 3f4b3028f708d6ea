//! Where AWS credentials come from, and the [`ProviderAuth`] that signs every Bedrock request.
//!
//! Sources ([`CredentialsSource`]):
//!
//! - **Static**: a key pair (and optional session token) given in code, or read once from the
//!   environment variables the provider config names (`access_key_id_env`,
//!   `secret_access_key_env`, `session_token_env`).
//! - **Environment**: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`,
//!   read again for every request (rotated temporary credentials are picked up), falling back
//!   to the values seen when the config was loaded.
//! - **Profile**: a shared credentials file (`~/.aws/credentials`, or
//!   `AWS_SHARED_CREDENTIALS_FILE`), INI sections `[name]` with `aws_access_key_id`,
//!   `aws_secret_access_key` and `aws_session_token`; the profile is `AWS_PROFILE` or
//!   `default`. The file is read at most 64 KiB, and read again when its modification time
//!   changes (tools that refresh temporary credentials rewrite it).
//!
//! A missing or unreadable credential is the gateway's own failure: a 502 that lets fallback
//! move on, with a message naming the source, never a secret.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use super::{sign_request, SigningParams};
use crate::client::UpstreamBody;
use crate::provider::ProviderAuth;
use crate::Error;

/// The largest credentials file read.
const MAX_CREDENTIALS_FILE: u64 = 64 * 1024;

/// An AWS key pair, with a session token for temporary credentials. `Debug` shows only the
/// access key id.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: Arc<str>,
    secret_access_key: Arc<str>,
    session_token: Option<Arc<str>>,
}

impl Credentials {
    /// A key pair, and a session token if the credentials are temporary.
    pub fn new(access_key_id: &str, secret_access_key: &str, session_token: Option<&str>) -> Self {
        Self {
            access_key_id: access_key_id.trim().into(),
            secret_access_key: secret_access_key.trim().into(),
            session_token: session_token
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(Into::into),
        }
    }

    /// The access key id (not secret).
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Where a provider's credentials come from (see the [module docs](self)).
#[derive(Debug)]
pub enum CredentialsSource {
    /// Fixed credentials.
    Static(Credentials),
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, read per request;
    /// the credentials seen at load time when the process environment has none.
    Environment(Option<Credentials>),
    /// A profile of a shared credentials file, re-read when the file changes.
    Profile {
        /// The file.
        path: PathBuf,
        /// The profile (section) name.
        profile: String,
        /// The last read: the file's modification time and what it held.
        #[doc(hidden)]
        cache: Mutex<Option<(SystemTime, Credentials)>>,
    },
}

impl CredentialsSource {
    /// A profile source.
    pub fn profile(path: impl Into<PathBuf>, profile: impl Into<String>) -> Self {
        Self::Profile {
            path: path.into(),
            profile: profile.into(),
            cache: Mutex::new(None),
        }
    }

    /// The current credentials.
    pub fn credentials(&self) -> Result<Credentials, Error> {
        match self {
            Self::Static(c) => Ok(c.clone()),
            Self::Environment(loaded) => {
                let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
                match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                    (Some(id), Some(secret)) => Ok(Credentials::new(
                        &id,
                        &secret,
                        var("AWS_SESSION_TOKEN").as_deref(),
                    )),
                    _ => loaded.clone().ok_or_else(|| {
                        Error::upstream(
                            "AWS credentials are not set (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                        )
                    }),
                }
            }
            Self::Profile {
                path,
                profile,
                cache,
            } => {
                let cannot = |what: &str| {
                    Error::upstream(format!(
                        "cannot read AWS profile `{profile}` from {}: {what}",
                        path.display()
                    ))
                };
                let mtime = std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .map_err(|e| cannot(&e.to_string()))?;
                let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((at, c)) = cache.as_ref() {
                    if *at == mtime {
                        return Ok(c.clone());
                    }
                }
                let text = read_bounded(path).map_err(|e| cannot(&e))?;
                let c = parse_profile(&text, profile)
                    .ok_or_else(|| cannot("no such profile, or it has no key pair"))?;
                *cache = Some((mtime, c.clone()));
                Ok(c)
            }
        }
    }
}

fn read_bounded(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    f.take(MAX_CREDENTIALS_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > MAX_CREDENTIALS_FILE {
        return Err("the file is larger than 64 KiB".into());
    }
    String::from_utf8(buf).map_err(|_| "the file is not UTF-8".into())
}

/// The key pair of `[profile]` in a shared credentials file (INI; `#` and `;` comments).
pub fn parse_profile(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_section = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            in_section = name == profile || name.strip_prefix("profile ") == Some(profile);
            continue;
        }
        if !in_section {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => id = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    match (id, secret) {
        (Some(i), Some(s)) if !i.is_empty() && !s.is_empty() => Some(Credentials::new(i, s, token)),
        _ => None,
    }
}

/// Signs every request of a provider with SigV4 for one region and service (see the
/// [module docs](self) for credentials).
#[derive(Debug, Clone)]
pub struct SigV4Auth {
    source: Arc<CredentialsSource>,
    region: Arc<str>,
    service: Arc<str>,
}

impl SigV4Auth {
    /// Signs for `region` as service `bedrock`.
    pub fn bedrock(region: &str, source: CredentialsSource) -> Self {
        Self {
            source: Arc::new(source),
            region: region.into(),
            service: "bedrock".into(),
        }
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The credentials source.
    pub fn source(&self) -> &CredentialsSource {
        &self.source
    }
}

impl ProviderAuth for SigV4Auth {
    fn authorize<'a>(
        &'a self,
        req: &'a mut http::Request<UpstreamBody>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), Error>> {
        let result = (|| {
            let creds = self.source.credentials()?;
            // The hash covers exactly the bytes that will be sent.
            let body = req.body().to_bytes();
            let params = SigningParams {
                access_key_id: &creds.access_key_id,
                secret_access_key: &creds.secret_access_key,
                session_token: creds.session_token.as_deref(),
                region: &self.region,
                service: &self.service,
                time: SystemTime::now(),
            };
            sign_request(req, &body, &params)
        })();
        Box::pin(std::future::ready(result))
    }

    /// A key pair is set, or the profile can be read now.
    fn has_credentials(&self) -> bool {
        self.source.credentials().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_from_ini() {
        let text = "# c\n[default]\naws_access_key_id = A1\naws_secret_access_key=S1\n\n\
                    [profile work]\naws_access_key_id=A2\naws_secret_access_key=S2\naws_session_token = T2\n";
        assert_eq!(
            parse_profile(text, "default").unwrap().access_key_id(),
            "A1"
        );
        let w = parse_profile(text, "work").unwrap();
        assert_eq!(w, Credentials::new("A2", "S2", Some("T2")));
        assert!(parse_profile(text, "none").is_none());
        assert!(!format!("{w:?}").contains("S2"));
    }

    #[test]
    fn a_changed_profile_file_is_read_again() {
        let dir =
            std::env::temp_dir().join(format!("sb-aws-{}", crate::openai::unique_hex().as_str()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("credentials");
        std::fs::write(
            &path,
            "[default]\naws_access_key_id=A\naws_secret_access_key=S\n",
        )
        .unwrap();
        let src = CredentialsSource::profile(&path, "default");
        assert_eq!(src.credentials().unwrap().access_key_id(), "A");
        std::fs::write(
            &path,
            "[default]\naws_access_key_id=B\naws_secret_access_key=S\n",
        )
        .unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(src.credentials().unwrap().access_key_id(), "B");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
