//! The relay's delivery call with the stored event bytes passed through. The outbox stores
//! each event as its encoded `Event`, and a `DeliverRequest` on the wire is nothing but those
//! encodings, each as field 1 (`repeated Event events = 1`): a length-delimited value is the
//! same on the wire whether it is read as a message or as bytes. So the relay sends the
//! stored bytes as they are, instead of decoding every event only to encode it again; the
//! consumer reads an ordinary `DeliverRequest`.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType};
use switchyard_proto::events::v1::DeliverResponse;

use crate::grpc::GrpcChannel;

/// `DeliverRequest` with its events already encoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedEvents {
    pub events: Vec<Vec<u8>>,
}

impl prost::Message for EncodedEvents {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        prost::encoding::bytes::encode_repeated(1, &self.events, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        if tag == 1 {
            prost::encoding::bytes::merge_repeated(wire_type, &mut self.events, buf, ctx)
        } else {
            prost::encoding::skip_field(wire_type, tag, buf, ctx)
        }
    }

    fn encoded_len(&self) -> usize {
        prost::encoding::bytes::encoded_len_repeated(1, &self.events)
    }

    fn clear(&mut self) {
        self.events.clear();
    }
}

/// The `EventSink.Deliver` method, as the generated client names it.
const DELIVER: &str = "/switchyard.events.v1.EventSink/Deliver";

/// Calls a consumer's `EventSink.Deliver` with already encoded events.
#[derive(Clone)]
pub struct SinkClient {
    inner: tonic::client::Grpc<GrpcChannel>,
}

impl SinkClient {
    pub fn new(channel: GrpcChannel) -> SinkClient {
        SinkClient {
            inner: tonic::client::Grpc::new(channel),
        }
    }

    pub async fn deliver(
        &mut self,
        events: EncodedEvents,
    ) -> Result<tonic::Response<DeliverResponse>, tonic::Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("event sink not reachable: {e}")))?;
        let codec = tonic_prost::ProstCodec::<EncodedEvents, DeliverResponse>::default();
        let path = http::uri::PathAndQuery::from_static(DELIVER);
        self.inner
            .unary(tonic::Request::new(events), path, codec)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use switchyard_proto::events::v1::{DeliverRequest, Event};

    #[test]
    fn stored_bytes_pass_through_as_a_deliver_request() {
        let events: Vec<Event> = (0..3)
            .map(|i| Event {
                id: format!("e-{i}"),
                source: "scheduler".into(),
                ..Event::default()
            })
            .collect();
        let encoded = EncodedEvents {
            events: events.iter().map(Message::encode_to_vec).collect(),
        };
        let bytes = encoded.encode_to_vec();
        assert_eq!(bytes.len(), encoded.encoded_len());
        let read = DeliverRequest::decode(bytes.as_slice()).expect("a DeliverRequest");
        assert_eq!(read.events, events);
        assert_eq!(
            bytes,
            DeliverRequest { events }.encode_to_vec(),
            "the same bytes as the generated message"
        );
        assert_eq!(EncodedEvents::decode(bytes.as_slice()).ok(), Some(encoded));
    }
}
