//! A Vertex AI provider from the catalog's `[providers.*]` settings.

use super::{GoogleAuth, Vertex};
use crate::provider::Provider;

/// The Vertex-specific settings of a `kind = "vertex"` provider.
#[derive(Debug, Clone, Default)]
pub(crate) struct VertexSettings {
    /// The Google Cloud project (required).
    pub(crate) project: Option<String>,
    /// The location (default `global`).
    pub(crate) location: Option<String>,
    /// A service account key file.
    pub(crate) credentials_file: Option<String>,
    /// An environment variable holding a key file's JSON, or its path.
    pub(crate) credentials_env: Option<String>,
    /// The metadata server's token URL (default Google's).
    pub(crate) metadata_url: Option<String>,
}

/// The default location.
pub(crate) const DEFAULT_LOCATION: &str = "global";

/// The largest key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;

impl VertexSettings {
    /// Whether any Vertex setting is present (they are refused on other kinds).
    pub(crate) fn any(&self) -> bool {
        self.project.is_some()
            || self.location.is_some()
            || self.credentials_file.is_some()
            || self.credentials_env.is_some()
            || self.metadata_url.is_some()
    }

    /// The base URL when the config gives none.
    pub(crate) fn default_base_url(&self) -> String {
        Vertex::default_base_url(self.location.as_deref().unwrap_or(DEFAULT_LOCATION))
    }

    /// `provider` with the Vertex codec and its token source. Credentials come from
    /// `credentials_file`, else `credentials_env`, else `GOOGLE_APPLICATION_CREDENTIALS`
    /// (a path), else the metadata server. Errors name the field, never a key.
    pub(crate) fn apply(
        &self,
        provider: Provider,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Provider, String> {
        let Some(project) = self.project.as_deref() else {
            return Err("project: required for kind = \"vertex\"".into());
        };
        let location = self.location.as_deref().unwrap_or(DEFAULT_LOCATION);
        let codec = Vertex::new(project, location)
            .map_err(|e| format!("project/location: {}", e.message()))?;
        let from_json = |what: &str, json: &[u8]| {
            GoogleAuth::from_json(json).map_err(|e| format!("{what}: {}", e.message()))
        };
        let auth = if let Some(path) = &self.credentials_file {
            from_json(
                "credentials_file",
                &read_key_file("credentials_file", path)?,
            )?
        } else if let Some(var) = &self.credentials_env {
            let Some(value) = env(var).filter(|v| !v.trim().is_empty()) else {
                return Err(format!("credentials_env: `{var}` is not set"));
            };
            if value.trim_start().starts_with('{') {
                from_json("credentials_env", value.as_bytes())?
            } else {
                from_json(
                    "credentials_env",
                    &read_key_file("credentials_env", value.trim())?,
                )?
            }
        } else if let Some(path) = env("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty()) {
            let field = "credentials (GOOGLE_APPLICATION_CREDENTIALS)";
            from_json(field, &read_key_file(field, &path)?)?
        } else if let Some(url) = &self.metadata_url {
            GoogleAuth::metadata_server_at(url)
                .map_err(|e| format!("metadata_url: {}", e.message()))?
        } else {
            GoogleAuth::metadata_server()
        };
        Ok(provider.with_codec(codec).with_auth(auth))
    }
}

/// Reads a key file, at most 64 KiB.
fn read_key_file(field: &str, path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| format!("{field}: cannot read the key file {path}: {e}");
    let f = std::fs::File::open(path).map_err(cannot)?;
    let mut buf = Vec::new();
    f.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(cannot)?;
    if buf.len() as u64 > MAX_KEY_FILE {
        return Err(format!(
            "{field}: the key file {path} is larger than 64 KiB"
        ));
    }
    Ok(buf)
}
