//! Reading a request body within its source's size limit, the body deadline
//! (`[server] body_timeout`) and the server-wide budget of body bytes held in memory
//! (`[server] max_body_memory`).
//!
//! A body with a declared length takes its whole share of the budget before a byte is read,
//! so an over-budget request is refused at once instead of after its upload; a chunked body
//! takes its share as chunks arrive. The share returns to the budget when the `Held` body is
//! dropped, after the delivery is answered.

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// The bytes of request bodies held in memory at once, across all connections.
pub struct BodyMemory {
    budget: Semaphore,
}

impl BodyMemory {
    pub fn new(bytes: usize) -> BodyMemory {
        BodyMemory { budget: Semaphore::new(bytes.min(Semaphore::MAX_PERMITS)) }
    }

    /// Takes `bytes` from the budget without waiting: a sender is better served by a quick
    /// 503 it retries than by a request that hangs until others finish.
    fn take(&self, bytes: usize) -> Result<SemaphorePermit<'_>, BodyError> {
        let bytes = u32::try_from(bytes).map_err(|_| BodyError::NoMemory)?;
        self.budget.try_acquire_many(bytes).map_err(|_| BodyError::NoMemory)
    }
}

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the source's limit.
    TooLarge,
    /// Not complete within the body timeout.
    TimedOut,
    /// The memory budget cannot hold it now.
    NoMemory,
    /// The connection failed or the framing was broken.
    Unreadable,
}

/// A body read whole, holding its share of the memory budget until dropped.
pub struct Held<'a> {
    pub bytes: Bytes,
    _share: SemaphorePermit<'a>,
}

/// Reads `body` (which declared `declared` bytes, if it did) of at most `limit` bytes within
/// `timeout`, holding it in `memory`.
pub async fn read_body<'a>(
    body: Body,
    declared: Option<u64>,
    limit: usize,
    memory: &'a BodyMemory,
    timeout: Duration,
) -> Result<Held<'a>, BodyError> {
    let reserved = declared.map_or(0, |len| usize::try_from(len).unwrap_or(usize::MAX));
    if reserved > limit {
        return Err(BodyError::TooLarge);
    }
    let mut share = memory.take(reserved)?;
    let reading = async {
        let mut body = body;
        let mut bytes = Vec::with_capacity(reserved);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Unreadable)?;
            let Ok(chunk) = frame.into_data() else { continue };
            if bytes.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
            if bytes.len() > share.num_permits() {
                share.merge(memory.take(bytes.len() - share.num_permits())?);
            }
        }
        Ok(bytes)
    };
    let bytes = tokio::time::timeout(timeout, reading).await.map_err(|_| BodyError::TimedOut)??;
    Ok(Held { bytes: Bytes::from(bytes), _share: share })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn chunked(chunks: Vec<&'static [u8]>) -> Body {
        Body::from_stream(stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>)))
    }

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_declared_body_takes_its_share_up_front_and_gives_it_back_when_dropped() {
        let memory = BodyMemory::new(10);
        let held = read_body(Body::from("12345678"), Some(8), 100, &memory, LONG).await.unwrap();
        assert_eq!(&held.bytes[..], b"12345678");
        assert_eq!(read_body(Body::from("123"), Some(3), 100, &memory, LONG).await.err(), Some(BodyError::NoMemory));
        drop(held);
        assert!(read_body(Body::from("123"), Some(3), 100, &memory, LONG).await.is_ok());
    }

    #[tokio::test]
    async fn a_chunked_body_takes_its_share_as_it_arrives() {
        let memory = BodyMemory::new(5);
        let held = read_body(chunked(vec![b"12", b"34"]), None, 100, &memory, LONG).await.unwrap();
        assert_eq!(&held.bytes[..], b"1234");
        let over = read_body(chunked(vec![b"12"]), None, 100, &memory, LONG).await;
        assert_eq!(over.err(), Some(BodyError::NoMemory));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_too_large_whether_declared_or_not() {
        let memory = BodyMemory::new(1000);
        assert_eq!(read_body(Body::from("x"), Some(11), 10, &memory, LONG).await.err(), Some(BodyError::TooLarge));
        let undeclared = read_body(chunked(vec![b"123456", b"789012"]), None, 10, &memory, LONG).await;
        assert_eq!(undeclared.err(), Some(BodyError::TooLarge));
    }

    #[tokio::test]
    async fn a_body_that_stalls_times_out() {
        let memory = BodyMemory::new(1000);
        let stalled = Body::from_stream(stream::pending::<Result<Bytes, std::io::Error>>());
        let read = read_body(stalled, Some(5), 10, &memory, Duration::from_millis(50)).await;
        assert_eq!(read.err(), Some(BodyError::TimedOut));
    }
}
