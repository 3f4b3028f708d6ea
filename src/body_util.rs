//! Reading a whole HTTP body into one `Bytes`, bounded in size.

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;

use crate::BoxError;

/// Why [`read_to_bytes`] gave up.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The body is longer than the limit.
    TooLarge,
    /// The body failed (connection reset, client gone, …).
    Body(BoxError),
}

/// Reads `body` to its end, refusing more than `max` bytes. A body that arrives as one data
/// frame (the usual case for a JSON request or answer) is returned as that frame, without a
/// copy; only a body in several frames is gathered into a new buffer. Trailers are ignored.
pub(crate) async fn read_to_bytes<B>(body: B, max: usize) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut first = Bytes::new();
    let mut gathered: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Body(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let total = first.len() + gathered.len() + data.len();
        if total > max {
            return Err(ReadError::TooLarge);
        }
        if first.is_empty() && gathered.is_empty() {
            first = data;
            continue;
        }
        if gathered.is_empty() {
            let hint = usize::try_from(body.size_hint().lower()).unwrap_or(0);
            gathered.reserve(total.saturating_add(hint).min(max));
            gathered.extend_from_slice(&std::mem::take(&mut first));
        }
        gathered.extend_from_slice(&data);
    }
    Ok(if gathered.is_empty() {
        first
    } else {
        Bytes::from(gathered)
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body::Frame;
    use http_body_util::StreamBody;

    use super::*;

    fn frames(
        parts: &[&'static str],
    ) -> StreamBody<impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>>> {
        let mut v: Vec<Result<Frame<Bytes>, Infallible>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        v.push(Ok(Frame::trailers(http::HeaderMap::new())));
        StreamBody::new(futures_util::stream::iter(v))
    }

    #[tokio::test]
    async fn one_frame_is_kept_and_many_are_joined() {
        let one = read_to_bytes(frames(&["{\"a\":1}"]), 100).await.unwrap();
        assert_eq!(one, "{\"a\":1}");
        let many = read_to_bytes(frames(&["{\"a\"", "", ":1", "}"]), 100)
            .await
            .unwrap();
        assert_eq!(many, "{\"a\":1}");
        let none = read_to_bytes(frames(&[]), 100).await.unwrap();
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn the_limit_is_inclusive() {
        assert_eq!(
            read_to_bytes(frames(&["abc", "de"]), 5).await.unwrap(),
            "abcde"
        );
        assert!(matches!(
            read_to_bytes(frames(&["abc", "def"]), 5).await,
            Err(ReadError::TooLarge)
        ));
        assert!(matches!(
            read_to_bytes(frames(&["abcdef"]), 5).await,
            Err(ReadError::TooLarge)
        ));
    }

    #[tokio::test]
    async fn body_errors_are_passed_on() {
        let failing = StreamBody::new(futures_util::stream::iter(vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Err(std::io::Error::other("reset")),
        ]));
        assert!(matches!(
            read_to_bytes(failing, 10).await,
            Err(ReadError::Body(_))
        ));
    }
}
