//! How many run event streams (`GET /api/v1/runs/{id}/events`) a gateway keeps open: at most
//! [`MAX_OPEN_STREAMS`] in all, and at most `http.event_streams_per_caller` for one caller
//! (token or user), so that one client that opens streams in a loop, or never closes them,
//! cannot take every stream the gateway has from everybody else. A stream holds its
//! [`StreamPermit`] for its whole life; dropping it gives both places back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Event streams one gateway keeps open at once. Kept under control-plane's HTTP/2 stream
/// limit (`grpc.max_concurrent_streams`, 1024), since every stream holds one on the gateway's
/// streams-only connection.
pub const MAX_OPEN_STREAMS: usize = 1000;

/// Why a stream was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The gateway has [`MAX_OPEN_STREAMS`] open.
    GatewayFull,
    /// This caller has its share open.
    CallerFull { limit: usize },
}

/// The open streams, in all and by caller. Cheap to clone: clones share the counts.
#[derive(Clone)]
pub struct EventStreams {
    total: Arc<Semaphore>,
    by_caller: Arc<Mutex<HashMap<String, usize>>>,
    per_caller: usize,
}

impl EventStreams {
    pub fn new(per_caller: usize) -> EventStreams {
        EventStreams {
            total: Arc::new(Semaphore::new(MAX_OPEN_STREAMS)),
            by_caller: Arc::default(),
            per_caller,
        }
    }

    /// A place for one more stream of `caller`, or why there is none.
    pub fn try_open(&self, caller: &str) -> Result<StreamPermit, Refusal> {
        let mut by_caller = self
            .by_caller
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let open = by_caller.get(caller).copied().unwrap_or(0);
        if open >= self.per_caller {
            return Err(Refusal::CallerFull {
                limit: self.per_caller,
            });
        }
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::GatewayFull)?;
        by_caller.insert(caller.to_owned(), open + 1);
        Ok(StreamPermit {
            _total: total,
            by_caller: self.by_caller.clone(),
            caller: caller.to_owned(),
        })
    }

    /// Streams `caller` has open now.
    #[cfg(test)]
    fn open_by(&self, caller: &str) -> usize {
        let by_caller = self
            .by_caller
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        by_caller.get(caller).copied().unwrap_or(0)
    }
}

/// One open stream's place; given back on drop.
#[derive(Debug)]
pub struct StreamPermit {
    _total: OwnedSemaphorePermit,
    by_caller: Arc<Mutex<HashMap<String, usize>>>,
    caller: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut by_caller = self
            .by_caller
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Callers with nothing open are forgotten, so the map follows open streams only.
        if let Some(open) = by_caller.get_mut(&self.caller) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                by_caller.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_past_its_share_is_refused_and_others_are_not() {
        let streams = EventStreams::new(2);
        let first = streams.try_open("a").expect("a's first");
        let _second = streams.try_open("a").expect("a's second");
        assert_eq!(
            streams.try_open("a").map(|_| ()),
            Err(Refusal::CallerFull { limit: 2 })
        );
        let _b = streams.try_open("b").expect("b is not held to a's share");
        assert_eq!(streams.open_by("a"), 2);
        drop(first);
        assert_eq!(streams.open_by("a"), 1);
        assert!(
            streams.try_open("a").is_ok(),
            "a closed one, so may open one"
        );
    }

    #[test]
    fn closed_streams_give_their_places_back_and_idle_callers_are_forgotten() {
        let streams = EventStreams::new(3);
        let permits: Vec<_> = (0..3)
            .map(|_| streams.try_open("a").expect("under the share"))
            .collect();
        assert_eq!(streams.total.available_permits(), MAX_OPEN_STREAMS - 3);
        drop(permits);
        assert_eq!(streams.total.available_permits(), MAX_OPEN_STREAMS);
        assert_eq!(streams.open_by("a"), 0);
        let by_caller = streams.by_caller.lock().expect("not poisoned");
        assert!(by_caller.is_empty(), "{by_caller:?}");
    }

    #[test]
    fn a_full_gateway_refuses_every_caller() {
        let streams = EventStreams::new(MAX_OPEN_STREAMS);
        let _all: Vec<_> = (0..MAX_OPEN_STREAMS)
            .map(|i| {
                streams
                    .try_open(&format!("caller-{}", i % 7))
                    .expect("room left")
            })
            .collect();
        assert_eq!(
            streams.try_open("someone-else").map(|_| ()),
            Err(Refusal::GatewayFull)
        );
        assert_eq!(
            streams.open_by("someone-else"),
            0,
            "a refusal holds nothing"
        );
    }
}
