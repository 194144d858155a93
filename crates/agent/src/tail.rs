//! The last part of a task's output, bounded in memory however much the command prints.

use std::collections::VecDeque;

pub struct Tail {
    limit: usize,
    bytes: VecDeque<u8>,
    /// Bytes dropped from the front, so the report can say the tail is partial.
    dropped: u64,
}

impl Tail {
    pub fn new(limit: usize) -> Tail {
        Tail {
            limit,
            bytes: VecDeque::with_capacity(limit.min(64 * 1024)),
            dropped: 0,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        let chunk = if chunk.len() > self.limit {
            self.dropped += (chunk.len() - self.limit) as u64;
            &chunk[chunk.len() - self.limit..]
        } else {
            chunk
        };
        let overflow = (self.bytes.len() + chunk.len()).saturating_sub(self.limit);
        self.bytes.drain(..overflow);
        self.dropped += overflow as u64;
        self.bytes.extend(chunk);
    }

    /// The tail as text (invalid UTF-8 replaced), marked when earlier output was dropped.
    pub fn text(&self) -> String {
        let (a, b) = self.bytes.as_slices();
        let mut all = Vec::with_capacity(a.len() + b.len());
        all.extend_from_slice(a);
        all.extend_from_slice(b);
        let text = String::from_utf8_lossy(&all).into_owned();
        if self.dropped > 0 {
            format!("[… {} earlier bytes not kept]\n{text}", self.dropped)
        } else {
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_bytes() {
        let mut tail = Tail::new(8);
        tail.push(b"hello ");
        assert_eq!(tail.text(), "hello ");
        tail.push(b"world!");
        assert_eq!(tail.text(), "[… 4 earlier bytes not kept]\no world!");
        tail.push(b"a very long line at once");
        assert!(tail.text().ends_with("t once"), "{}", tail.text());
    }
}
