use super::*;

// ---------------------------------------------------------------------------------------------
// The helper processes: the stamping upstream and the bare proxy

/// The upstream's body; a stream's first frame writes its wall-clock stamp to stdout.
pub(crate) struct Stamped {
    pub(crate) inner: Canned,
    pub(crate) stamp: bool,
}

impl Body for Stamped {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if this.stamp && matches!(polled, Poll::Ready(Some(_))) {
            this.stamp = false;
            let now = wall_nanos();
            let _ = writeln!(std::io::stdout().lock(), "{now}");
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `support::upstream()` with the first frame of every stream stamped.
pub(crate) fn stamped_upstream() -> impl Service<
    Request<Incoming>,
    Response = Response<Stamped>,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
       + Send
       + 'static {
    let upstream = support::upstream();
    service_fn(move |req: Request<Incoming>| {
        let answer = upstream.call(req);
        async move {
            let resp = answer.await?;
            let stamp = resp
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v == "text/event-stream");
            Ok(resp.map(|inner| Stamped { inner, stamp }))
        }
    })
}

/// Runs this executable as a helper (`upstream` or `bare-proxy`) until its stdin closes.
pub(crate) fn helper(role: &str) {
    // The bench holds the other end of stdin: when it is gone, so is this process.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    match role {
        "upstream" => support::runtime(0).block_on(async {
            let listener = support::bind(support::loopback()).await;
            support::announce(&listener);
            support::serve(listener, stamped_upstream()).await;
        }),
        "bare-proxy" => {
            let upstream = std::env::var(ROLE_UPSTREAM)
                .ok()
                .and_then(|s| support::parse_addr(&s))
                .expect("the bench passes the upstream's address");
            let workers = std::env::var(ROLE_WORKERS)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1);
            support::runtime(workers).block_on(async {
                let listener = support::bind(support::loopback()).await;
                support::announce(&listener);
                Mode::BareProxy.serve(listener, upstream).await;
            });
        }
        other => panic!("unknown {ROLE}: {other}"),
    }
}
