//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`), written on `ring`'s HMAC-SHA256 and `sha2`,
//! checked against the published vectors of AWS's SigV4 test suite (see the tests).
//!
//! The canonical request is
//!
//! ```text
//! METHOD \n canonical URI \n canonical query \n canonical headers \n signed headers \n payload hash
//! ```
//!
//! where the canonical URI is the request's (already percent-encoded) path with every segment
//! percent-encoded once more (AWS services other than S3 sign the double-encoded path: a model
//! id `…-v1:0`, sent as `…-v1%3A0`, is signed as `…-v1%253A0`), the query is sorted by name,
//! the headers are lowercased, trimmed and sorted, and the payload hash is the hex SHA-256 of
//! the exact body bytes sent. The signing key is
//! `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.

pub mod auth;

use std::fmt::Write as _;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

pub use self::auth::{Credentials, CredentialsSource, SigV4Auth};

/// What one signature needs besides the request.
#[derive(Debug, Clone, Copy)]
pub struct SigningParams<'a> {
    /// The access key id.
    pub access_key_id: &'a str,
    /// The secret access key.
    pub secret_access_key: &'a str,
    /// A session token (temporary credentials), sent as `x-amz-security-token`.
    pub session_token: Option<&'a str>,
    /// The region (`us-east-1`).
    pub region: &'a str,
    /// The signing name of the service (`bedrock`).
    pub service: &'a str,
    /// The signing time.
    pub time: SystemTime,
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> ring::hmac::Tag {
    ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), data)
}

/// The signing key for a date (`YYYYMMDD`), region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> ring::hmac::Tag {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(k_date.as_ref(), region.as_bytes());
    let k_service = hmac(k_region.as_ref(), service.as_bytes());
    hmac(k_service.as_ref(), b"aws4_request")
}

/// `(YYYYMMDD'T'HHMMSS'Z', YYYYMMDD)` for a time (UTC).
pub fn amz_date(t: SystemTime) -> (String, String) {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let date = format!("{y:04}{m:02}{d:02}");
    let stamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    (stamp, date)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Percent-encodes `s` per SigV4: everything but `A-Z a-z 0-9 - _ . ~`, uppercase hex.
pub fn uri_encode(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// The canonical URI: each segment of the (already encoded) path encoded again.
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut out = String::with_capacity(path.len() + 16);
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        uri_encode(seg, &mut out);
    }
    out
}

/// The canonical query: `name=value` pairs (each encoded) sorted by name, then value.
pub fn canonical_query(query: Option<&str>) -> String {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return String::new();
    };
    let decode = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while let Some(&c) = b.get(i) {
            let hex = (c == b'%')
                .then(|| b.get(i + 1..i + 3))
                .flatten()
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(v) => {
                    out.push(v);
                    i += 3;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let mut pairs: Vec<(String, String)> = q
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let (mut ek, mut ev) = (String::new(), String::new());
            uri_encode(&decode(k), &mut ek);
            uri_encode(&decode(v), &mut ev);
            (ek, ev)
        })
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Headers never signed (they may change on the way, or carry the signature itself).
fn unsigned(name: &str) -> bool {
    matches!(
        name,
        "authorization"
            | "user-agent"
            | "x-amzn-trace-id"
            | "expect"
            | "connection"
            | "transfer-encoding"
            | "content-length"
    )
}

/// `(signed header names joined by ';', canonical headers block)` from `(name, value)` pairs
/// (names lowercase).
pub fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut hs: Vec<(&str, String)> = headers
        .iter()
        .filter(|(n, _)| !unsigned(n))
        .map(|(n, v)| {
            (
                n.as_str(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    hs.sort_by(|a, b| a.0.cmp(b.0));
    // Repeated names are joined with commas, in order.
    let mut merged: Vec<(&str, String)> = Vec::with_capacity(hs.len());
    for (n, v) in hs {
        match merged.last_mut() {
            Some((last, val)) if *last == n => {
                val.push(',');
                val.push_str(&v);
            }
            _ => merged.push((n, v)),
        }
    }
    let mut signed = String::new();
    let mut block = String::new();
    for (i, (n, v)) in merged.iter().enumerate() {
        if i > 0 {
            signed.push(';');
        }
        signed.push_str(n);
        block.push_str(n);
        block.push(':');
        block.push_str(v);
        block.push('\n');
    }
    (signed, block)
}

/// The signature (hex) of a canonical request, and the string it signed.
pub fn signature(
    canonical_request: &str,
    secret: &str,
    amz_date: &str,
    date: &str,
    region: &str,
    service: &str,
) -> String {
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let key = signing_key(secret, date, region, service);
    hex(hmac(key.as_ref(), to_sign.as_bytes()).as_ref())
}

/// The canonical request of `method`, `uri` and `headers` (name, value; names lowercase,
/// `host` included) with the body's hash.
pub fn canonical_request(
    method: &str,
    uri: &http::Uri,
    headers: &[(String, String)],
    payload_hash: &str,
) -> (String, String) {
    let (signed, block) = canonical_headers(headers);
    let req = format!(
        "{method}\n{}\n{}\n{block}\n{signed}\n{payload_hash}",
        canonical_uri(uri.path()),
        canonical_query(uri.query()),
    );
    (req, signed)
}

/// `host[:port]` as signed: the URI's authority, without a default port.
pub fn host_of(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?;
    Some(match (uri.scheme_str(), uri.port_u16()) {
        (Some("https"), Some(443)) | (Some("http"), Some(80)) | (_, None) => host.to_owned(),
        (_, Some(p)) => format!("{host}:{p}"),
    })
}

/// Signs `req` in place: adds `x-amz-date`, `x-amz-security-token` (with a session token),
/// `x-amz-content-sha256` and `authorization`, over the exact `body` bytes.
pub fn sign_request<B>(
    req: &mut http::Request<B>,
    body: &[u8],
    p: &SigningParams<'_>,
) -> Result<(), crate::Error> {
    use http::HeaderValue;
    let bad = || crate::Error::upstream("could not sign the request for the provider");
    let (stamp, date) = amz_date(p.time);
    let payload_hash = sha256_hex(body);
    let h = req.headers_mut();
    h.remove(http::header::AUTHORIZATION);
    h.insert(
        "x-amz-date",
        HeaderValue::from_str(&stamp).map_err(|_| bad())?,
    );
    h.insert(
        "x-amz-content-sha256",
        HeaderValue::from_str(&payload_hash).map_err(|_| bad())?,
    );
    match p.session_token {
        Some(t) => {
            let mut v = HeaderValue::from_str(t).map_err(|_| {
                crate::Error::upstream("the AWS session token is not a valid header value")
            })?;
            v.set_sensitive(true);
            h.insert("x-amz-security-token", v);
        }
        None => {
            h.remove("x-amz-security-token");
        }
    }
    let host = host_of(req.uri()).ok_or_else(bad)?;
    let mut pairs: Vec<(String, String)> = vec![("host".to_owned(), host)];
    for (n, v) in req.headers() {
        if n == http::header::HOST {
            continue;
        }
        let Ok(v) = v.to_str() else { continue };
        pairs.push((n.as_str().to_owned(), v.to_owned()));
    }
    let (creq, signed) = canonical_request(req.method().as_str(), req.uri(), &pairs, &payload_hash);
    let sig = signature(
        &creq,
        p.secret_access_key,
        &stamp,
        &date,
        p.region,
        p.service,
    );
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={}/{date}/{}/{}/aws4_request, SignedHeaders={signed}, Signature={sig}",
        p.access_key_id, p.region, p.service
    );
    let mut v = HeaderValue::from_str(&auth)
        .map_err(|_| crate::Error::upstream("the AWS access key id is not a valid header value"))?;
    v.set_sensitive(true);
    req.headers_mut().insert(http::header::AUTHORIZATION, v);
    Ok(())
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 …` header (for the demo's verification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    /// The access key id.
    pub access_key_id: String,
    /// `YYYYMMDD`.
    pub date: String,
    /// The region.
    pub region: String,
    /// The service.
    pub service: String,
    /// The signed header names.
    pub signed_headers: Vec<String>,
    /// The hex signature.
    pub signature: String,
}

/// Parses an `Authorization` header value; `None` when it is not a SigV4 one.
pub fn parse_authorization(v: &str) -> Option<ParsedAuthorization> {
    let rest = v.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => cred = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => sig = Some(v),
            _ => return None,
        }
    }
    let mut c = cred?.split('/');
    let (Some(key), Some(date), Some(region), Some(service), Some("aws4_request"), None) =
        (c.next(), c.next(), c.next(), c.next(), c.next(), c.next())
    else {
        return None;
    };
    Some(ParsedAuthorization {
        access_key_id: key.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: signed?.split(';').map(str::to_owned).collect(),
        signature: sig?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// 2015-08-30T12:36:00Z, the suite's time.
    fn suite_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    fn sign_suite(method: &str, url: &str, extra: &[(&str, &str)], body: &[u8]) -> String {
        let mut req = http::Request::builder()
            .method(method)
            .uri(url)
            .body(())
            .unwrap();
        for (n, v) in extra {
            req.headers_mut().insert(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        // The suite's vectors sign only host and x-amz-date (and the extra headers): compute
        // the signature the way `sign_request` does, without its x-amz-content-sha256.
        let (stamp, date) = amz_date(suite_time());
        assert_eq!(stamp, "20150830T123600Z");
        let mut pairs = vec![
            ("host".to_owned(), host_of(req.uri()).unwrap()),
            ("x-amz-date".to_owned(), stamp.clone()),
        ];
        for (n, v) in extra {
            pairs.push((n.to_ascii_lowercase(), (*v).to_owned()));
        }
        let (creq, _) = canonical_request(method, req.uri(), &pairs, &sha256_hex(body));
        signature(&creq, SECRET, &stamp, &date, "us-east-1", "service")
    }

    #[test]
    fn aws_sigv4_test_suite_vectors() {
        // get-vanilla
        assert_eq!(
            sign_suite("GET", "https://example.amazonaws.com/", &[], b""),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        // post-vanilla
        assert_eq!(
            sign_suite("POST", "https://example.amazonaws.com/", &[], b""),
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
        // get-vanilla-query-order-key-case
        assert_eq!(
            sign_suite(
                "GET",
                "https://example.amazonaws.com/?Param2=value2&Param1=value1",
                &[],
                b""
            ),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(
            amz_date(SystemTime::UNIX_EPOCH).0,
            "19700101T000000Z".to_owned()
        );
        // 2024-02-29T23:59:59Z (a leap day).
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        assert_eq!(amz_date(t).0, "20240229T235959Z");
    }

    #[test]
    fn the_model_path_is_double_encoded() {
        assert_eq!(
            canonical_uri("/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"),
            "/model/anthropic.claude-3-5-haiku-20241022-v1%253A0/converse"
        );
    }

    #[test]
    fn signed_requests_verify_and_parse() {
        let mut req = http::Request::builder()
            .method("POST")
            .uri("https://bedrock-runtime.us-east-1.amazonaws.com/model/a%3A0/converse")
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let p = SigningParams {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: SECRET,
            session_token: Some("tok"),
            region: "us-east-1",
            service: "bedrock",
            time: suite_time(),
        };
        sign_request(&mut req, b"{}", &p).unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        let parsed = parse_authorization(auth).unwrap();
        assert_eq!(parsed.access_key_id, "AKIDEXAMPLE");
        assert_eq!(parsed.service, "bedrock");
        assert_eq!(
            parsed.signed_headers,
            [
                "content-type",
                "host",
                "x-amz-content-sha256",
                "x-amz-date",
                "x-amz-security-token"
            ]
        );
        assert!(req.headers()["authorization"].is_sensitive());
    }
}
