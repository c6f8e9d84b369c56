//! The in-memory channel between the halves: two FIFO queues, each entry
//! tagged with the set incarnation it belongs to, so messages of a closed
//! set never reach its successor (clause `close.reuse`). Across processes the
//! same role is played by a socket and shared memory.

use crate::msg::{ToClient, ToServer};
use std::collections::VecDeque;

/// A message in flight, with the incarnation of the set it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tagged<M> {
    pub incarnation: u32,
    pub msg: M,
}

/// Both directions of one client object's link to the server.
#[derive(Debug, Default)]
pub struct Link {
    pub to_server: VecDeque<Tagged<ToServer>>,
    pub to_client: VecDeque<Tagged<ToClient>>,
    /// Bound on either queue; past it the sender's messages are dropped and
    /// counted (a bounded queue, as in real shared memory).
    pub capacity: usize,
    pub dropped: u64,
}

impl Link {
    pub fn new(capacity: usize) -> Link {
        Link {
            capacity,
            ..Link::default()
        }
    }

    pub fn send_to_server(&mut self, incarnation: u32, msg: ToServer) {
        if self.to_server.len() >= self.capacity {
            self.dropped += 1;
            return;
        }
        self.to_server.push_back(Tagged { incarnation, msg });
    }

    pub fn send_to_client(&mut self, incarnation: u32, msg: ToClient) {
        if self.to_client.len() >= self.capacity {
            self.dropped += 1;
            return;
        }
        self.to_client.push_back(Tagged { incarnation, msg });
    }

    pub fn is_empty(&self) -> bool {
        self.to_server.is_empty() && self.to_client.is_empty()
    }
}
