//! Bounded reads of what outside servers send: a whole body up to a byte cap, and a byte
//! stream whose lines may not grow past a limit. A server that misbehaves must not make a
//! function buffer without end.

use futures_util::{Stream, StreamExt};

/// Why a whole-body read stopped.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body exceeded {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Read(reqwest::Error),
}

/// Reads a response body whole, chunk by chunk, and stops as soon as it exceeds `cap` bytes.
pub async fn read_body(mut res: reqwest::Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why a line-limited stream failed.
#[derive(Debug, thiserror::Error)]
pub enum LineError<E> {
    #[error("a line exceeded {0} bytes")]
    TooLong(usize),
    #[error(transparent)]
    Read(E),
}

/// Passes a byte stream through, and yields [`LineError::TooLong`] in place of the chunk that
/// makes a line (the bytes since the last CR or LF) longer than `max`, before a line parser
/// downstream would buffer it. The consumer is expected to stop at that error.
pub fn limit_lines<S, B, E>(bytes: S, max: usize) -> impl Stream<Item = Result<B, LineError<E>>>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    let mut line = 0usize;
    bytes.map(move |chunk| {
        let chunk = chunk.map_err(LineError::Read)?;
        for (i, part) in chunk.as_ref().split(|b| *b == b'\n' || *b == b'\r').enumerate() {
            line = if i == 0 { line + part.len() } else { part.len() };
            if line > max {
                return Err(LineError::TooLong(max));
            }
        }
        Ok(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(chunks: &[&'static str], max: usize) -> Vec<Result<&'static str, String>> {
        let s = futures_util::stream::iter(chunks.iter().map(|c| Ok::<_, std::convert::Infallible>(*c)));
        limit_lines(s, max).map(|r| r.map_err(|e| e.to_string())).collect().await
    }

    #[tokio::test]
    async fn when_lines_stay_within_the_limit_should_pass_every_chunk() {
        assert_eq!(
            run(&["data", ": a\n", "bbbbb\r\n", "\rccc"], 7).await,
            [Ok("data"), Ok(": a\n"), Ok("bbbbb\r\n"), Ok("\rccc")]
        );
    }

    #[tokio::test]
    async fn when_a_line_grows_past_the_limit_should_fail_at_that_chunk() {
        let too_long = Err("a line exceeded 6 bytes".to_owned());
        assert_eq!(run(&["data", ": abc\n"], 6).await, [Ok("data"), too_long.clone()]);
        assert_eq!(run(&["\nabcdefg\nx"], 6).await, [too_long]);
    }
}
