use super::*;

// ---------------------------------------------------------------------------------------------
// Client (the connection and the request are `bench_support::stack`'s, as in benches/load.rs;
// errors are counted instead of fatal)

pub(crate) use support::{connect, origin_request as request};

/// Timings of one request (nanoseconds).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Request sent → end of the body.
    pub(crate) total: u64,
    /// Request sent → first body frame.
    pub(crate) first: u64,
    /// Upstream's stamp of its first frame → client's first frame (streams with stamps only).
    pub(crate) forward: Option<u64>,
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Why a request did not count.
pub(crate) enum Failure {
    /// A non-200 answer (read to the end; the connection stays).
    Status(String),
    /// The connection is unusable.
    Connection(String),
}

/// Sends one request on `send` and reads the body to the end.
pub(crate) async fn one(
    send: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
    stamps: Option<&Stamps>,
) -> Result<Sample, Failure> {
    send.ready()
        .await
        .map_err(|e| Failure::Connection(format!("connection closed: {e}")))?;
    let sent_wall = wall_nanos();
    let start = Instant::now();
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| Failure::Connection(format!("request failed: {e}")))?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut first = None;
    let mut first_wall = 0;
    let mut error_body = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::Connection(format!("response body failed: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if first.is_none() {
                first = Some(start.elapsed());
                first_wall = wall_nanos();
            }
            if status != StatusCode::OK && error_body.len() < 300 {
                error_body.extend_from_slice(data);
            }
        }
    }
    let total = start.elapsed();
    if status != StatusCode::OK {
        return Err(Failure::Status(format!(
            "{status}: {}",
            String::from_utf8_lossy(&error_body)
        )));
    }
    // The stamp is written before the proxy can see the frame, so it is there by now unless
    // the reader thread has not run yet.
    let forward = stamps
        .and_then(|s| s.wait(sent_wall, Duration::from_millis(50)))
        .map(|stamp| first_wall.saturating_sub(stamp));
    Ok(Sample {
        total: nanos(total),
        first: nanos(first.unwrap_or(total)),
        forward,
    })
}

/// What one connection did in one phase.
#[derive(Debug, Default)]
pub(crate) struct ConnResult {
    pub(crate) samples: Vec<Sample>,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

/// Keeps every connection busy with `body` until `for_` has passed; returns the connections
/// (`None` where one broke and could not be replaced), what they did and the wall time.
pub(crate) async fn phase(
    conns: Vec<Option<SendRequest<Full<Bytes>>>>,
    addr: SocketAddr,
    body: &Bytes,
    for_: Duration,
    stamps: Option<&Arc<Stamps>>,
) -> (Vec<Option<SendRequest<Full<Bytes>>>>, ConnResult, Duration) {
    let host = support::host_header(addr);
    let start = Instant::now();
    let deadline = start + for_;
    let mut tasks = Vec::with_capacity(conns.len());
    for mut send in conns {
        let host = host.clone();
        let body = body.clone();
        let stamps = stamps.cloned();
        tasks.push(tokio::spawn(async move {
            let mut r = ConnResult {
                samples: Vec::with_capacity(4096),
                ..ConnResult::default()
            };
            let fail = |r: &mut ConnResult, e: String| {
                r.errors += 1;
                r.first_error.get_or_insert(e);
            };
            while Instant::now() < deadline {
                let s = match send.as_mut() {
                    Some(s) => s,
                    None => match connect(addr).await {
                        Ok(s) => send.insert(s),
                        Err(e) => {
                            fail(&mut r, e);
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            continue;
                        }
                    },
                };
                match one(s, request(&host, &body), stamps.as_deref()).await {
                    Ok(sample) => r.samples.push(sample),
                    Err(Failure::Status(e)) => fail(&mut r, e),
                    Err(Failure::Connection(e)) => {
                        fail(&mut r, e);
                        send = None;
                    }
                }
            }
            (send, r)
        }));
    }
    let mut conns = Vec::with_capacity(tasks.len());
    let mut all = ConnResult::default();
    for t in tasks {
        let (send, r) = t.await.expect("a client task panicked");
        conns.push(send);
        all.samples.extend(r.samples);
        all.errors += r.errors;
        if all.first_error.is_none() {
            all.first_error = r.first_error;
        }
    }
    (conns, all, start.elapsed())
}
