//! A minimal Server-Sent Events parser for the gateway's event streams: bytes in, complete
//! events out. Handles `event:`, `data:` (several lines join with `\n`), comments and
//! keep-alives, lines ending in `\n` or `\r\n`, and chunks that split a line or a UTF-8
//! character anywhere. `id:` and `retry:` are read past: the CLI resumes by reconnecting.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `message` when the event named none (as the SSE specification says).
    pub name: String,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of an unfinished line.
    partial: Vec<u8>,
    name: String,
    data: Vec<String>,
}

impl SseParser {
    /// Feeds a chunk; returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &byte in chunk {
            if byte != b'\n' {
                self.partial.push(byte);
                continue;
            }
            let mut line = std::mem::take(&mut self.partial);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if let Some(event) = self.line(&String::from_utf8_lossy(&line)) {
                events.push(event);
            }
        }
        events
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => value.clone_into(&mut self.name),
            "data" => self.data.push(value.to_owned()),
            _ => {}
        }
        None
    }

    /// A blank line ends an event; one without data is dropped, as browsers do.
    fn dispatch(&mut self) -> Option<SseEvent> {
        let name = std::mem::take(&mut self.name);
        let data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return None;
        }
        Some(SseEvent {
            name: if name.is_empty() {
                "message".to_owned()
            } else {
                name
            },
            data: data.join("\n"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> SseEvent {
        SseEvent {
            name: name.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_comments_and_keep_alives() {
        let mut parser = SseParser::default();
        let events = parser.feed(
            b": keep-alive\n\nevent: status\nid: 1\ndata: {\"status\":\"queued\"}\n\n\
              event:end\r\ndata:{}\r\n\r\ndata: a\ndata: b\n\n",
        );
        assert_eq!(
            events,
            vec![
                event("status", "{\"status\":\"queued\"}"),
                event("end", "{}"),
                event("message", "a\nb"),
            ]
        );
    }

    #[test]
    fn chunks_may_split_lines_and_characters_anywhere() {
        let text = "event: status\ndata: {\"reason\":\"café\"}\n\n".as_bytes();
        for split in 0..text.len() {
            let mut parser = SseParser::default();
            let mut events = parser.feed(&text[..split]);
            events.extend(parser.feed(&text[split..]));
            assert_eq!(
                events,
                vec![event("status", "{\"reason\":\"café\"}")],
                "{split}"
            );
        }
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        let mut parser = SseParser::default();
        assert!(parser.feed(b"event: status\ndata: x\n").is_empty());
        let mut parser = SseParser::default();
        assert!(parser.feed(b"event: no-data\n\n").is_empty());
    }
}
