//! The hash chain: each record's hash covers its sequence number, its content and the previous
//! record's hash, so altering, removing or reordering any record breaks every later link.
//! Verification walks the chain from the latest retention checkpoint.

use sha2::{Digest, Sha256};

use super::record::Record;

/// The `prev_hash` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A record as stored: its position and links, plus the hashed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chained {
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
    pub record: Record,
}

/// Hex SHA-256 over the previous hash and the canonical encoding of `seq` and `record`.
pub fn hash(prev_hash: &str, seq: u64, record: &Record) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update([0x1e]);
    hasher.update(canonical(seq, record));
    hex::encode(hasher.finalize())
}

/// A JSON array of every field in a fixed order: unambiguous (strings are escaped and
/// delimited) and independent of struct field order or map ordering.
fn canonical(seq: u64, r: &Record) -> Vec<u8> {
    let fields = [
        seq.to_string(),
        r.event_id.clone(),
        r.source.clone(),
        r.actor_type.clone(),
        r.actor_id.clone(),
        r.actor_display_name.clone(),
        r.action.clone(),
        r.resource_type.clone(),
        r.resource_id.clone(),
        r.org_id.clone(),
        r.project_id.clone(),
        r.outcome.clone(),
        r.details_json.clone(),
        r.client_ip.clone(),
        r.user_agent.clone(),
        r.request_id.clone(),
        r.trace_id.clone(),
        r.occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        r.recorded_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    ];
    serde_json::to_vec(&fields).unwrap_or_default()
}

/// Links `records` after the chain head `(last_seq, last_hash)`.
pub fn link(last_seq: u64, last_hash: &str, records: Vec<Record>) -> Vec<Chained> {
    let mut prev = last_hash.to_owned();
    records
        .into_iter()
        .enumerate()
        .map(|(i, record)| {
            let seq = last_seq + 1 + i as u64;
            let hash = hash(&prev, seq, &record);
            Chained {
                seq,
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
                record,
            }
        })
        .collect()
}

/// Why verification stopped at a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub seq: u64,
    pub problem: String,
}

/// Checks records one by one, in sequence order, from a starting point.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: u64,
    prev_hash: String,
    checked: u64,
}

impl Verifier {
    /// Starts after `(seq, hash)`: a retention checkpoint, or `(0, GENESIS)`.
    pub fn after(seq: u64, hash: &str) -> Self {
        Verifier {
            expected_seq: seq + 1,
            prev_hash: hash.to_owned(),
            checked: 0,
        }
    }

    pub fn checked(&self) -> u64 {
        self.checked
    }

    pub fn check(&mut self, stored: &Chained) -> Result<(), Break> {
        let fail = |problem: String| Break {
            seq: stored.seq,
            problem,
        };
        if stored.seq != self.expected_seq {
            // Report the first missing position, which is where the chain broke.
            return Err(Break {
                seq: self.expected_seq.min(stored.seq),
                problem: format!(
                    "sequence gap: expected record {}, found {}",
                    self.expected_seq, stored.seq
                ),
            });
        }
        if stored.prev_hash != self.prev_hash {
            return Err(fail(
                "prev_hash does not match the previous record's hash".into(),
            ));
        }
        let recomputed = hash(&stored.prev_hash, stored.seq, &stored.record);
        if recomputed != stored.hash {
            return Err(fail(
                "content does not match its hash (record altered)".into(),
            ));
        }
        self.expected_seq += 1;
        self.prev_hash = stored.hash.clone();
        self.checked += 1;
        Ok(())
    }

    /// After the last record: the chain head must be where verification ended.
    pub fn finish(&self, head_seq: u64, head_hash: &str) -> Result<(), Break> {
        if head_seq + 1 != self.expected_seq {
            return Err(Break {
                seq: self.expected_seq,
                problem: format!(
                    "chain head is at record {head_seq} but records end at {}",
                    self.expected_seq - 1
                ),
            });
        }
        if head_hash != self.prev_hash {
            return Err(Break {
                seq: head_seq,
                problem: "chain head hash does not match the last record".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    fn record(i: u64) -> Record {
        let at = Utc
            .timestamp_opt(1_700_000_000 + i as i64, 123_456_000)
            .single()
            .unwrap_or_default();
        Record {
            event_id: format!("e{i}"),
            source: "control-plane".into(),
            actor_type: "user".into(),
            actor_id: format!("u{}", i % 3),
            actor_display_name: "ada".into(),
            action: "run.created".into(),
            resource_type: "run".into(),
            resource_id: format!("r{i}"),
            org_id: "o".into(),
            project_id: "p".into(),
            outcome: "success".into(),
            details_json: format!("{{\"n\":{i}}}"),
            client_ip: "10.0.0.1".into(),
            user_agent: "curl".into(),
            request_id: "req".into(),
            trace_id: String::new(),
            occurred_at: at,
            recorded_at: at,
        }
    }

    fn chain(n: u64) -> Vec<Chained> {
        link(0, GENESIS, (1..=n).map(record).collect())
    }

    fn verify(chain: &[Chained], after: (u64, &str)) -> Result<u64, Break> {
        let mut v = Verifier::after(after.0, after.1);
        for c in chain {
            v.check(c)?;
        }
        if let Some(last) = chain.last() {
            v.finish(last.seq, &last.hash)?;
        }
        Ok(v.checked())
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(20), (0, GENESIS)), Ok(20));
    }

    #[test]
    fn linking_continues_from_the_head() {
        let first = chain(3);
        let last = &first[2];
        let more = link(last.seq, &last.hash, vec![record(4)]);
        assert_eq!(more[0].seq, 4);
        assert_eq!(more[0].prev_hash, last.hash);
        let all: Vec<Chained> = first.into_iter().chain(more).collect();
        assert_eq!(verify(&all, (0, GENESIS)), Ok(4));
    }

    #[test]
    fn verification_can_start_at_a_checkpoint() {
        let all = chain(10);
        let checkpoint = &all[3];
        assert_eq!(verify(&all[4..], (checkpoint.seq, &checkpoint.hash)), Ok(6));
    }

    #[test]
    fn a_removed_record_is_reported_at_its_position() {
        let mut all = chain(10);
        all.remove(4); // seq 5
        let broke = verify(&all, (0, GENESIS)).expect_err("gap");
        assert_eq!(broke.seq, 5);
    }

    proptest! {
        #[test]
        fn any_altered_field_is_detected_at_that_record(n in 2u64..30, pick in 0usize..30, field in 0usize..6, text in "[a-z]{1,8}") {
            let mut all = chain(n);
            let i = pick % all.len();
            let target = &mut all[i].record;
            match field {
                0 => target.action.push_str(&text),
                1 => target.actor_id.push_str(&text),
                2 => target.details_json = format!("{{\"x\":\"{text}\"}}"),
                3 => target.outcome.push_str(&text),
                4 => target.resource_id.push_str(&text),
                _ => target.occurred_at += chrono::Duration::microseconds(1),
            }
            let broke = verify(&all, (0, GENESIS)).expect_err("tampering detected");
            prop_assert_eq!(broke.seq, i as u64 + 1);
        }

        #[test]
        fn rehashing_an_altered_record_breaks_the_next_link(n in 3u64..30, pick in 0usize..28) {
            let mut all = chain(n);
            let i = pick % (all.len() - 1);
            all[i].record.action = "forged".into();
            all[i].hash = hash(&all[i].prev_hash, all[i].seq, &all[i].record);
            let broke = verify(&all, (0, GENESIS)).expect_err("forgery detected");
            prop_assert_eq!(broke.seq, i as u64 + 2);
        }
    }
}
