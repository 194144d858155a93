//! Service tokens: `syt_` + 64 hex characters (256 random bits) + `_` + an 8-character
//! checksum. The prefix lets secret scanners recognise a leaked token; the checksum lets the
//! gateway refuse a typo or a truncated paste without a database lookup. Only the SHA-256 of
//! the whole token is stored.

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

pub const PREFIX: &str = "syt_";
const BODY_HEX: usize = 64;
const CHECKSUM_HEX: usize = 8;

/// A freshly issued token: the secret (shown once) and the hash that is stored.
pub struct Issued {
    pub secret: String,
    pub hash: String,
}

pub fn issue() -> Issued {
    let mut bytes = [0u8; BODY_HEX / 2];
    rand::rng().fill_bytes(&mut bytes);
    let body = hex::encode(bytes);
    let secret = format!("{PREFIX}{body}_{}", checksum(&body));
    let hash = hash(&secret);
    Issued { secret, hash }
}

/// SHA-256 of the whole token, hex: the lookup key.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `candidate` has the token shape and a matching checksum.
pub fn is_well_formed(candidate: &str) -> bool {
    let Some(rest) = candidate.strip_prefix(PREFIX) else {
        return false;
    };
    let Some((body, sum)) = rest.split_once('_') else {
        return false;
    };
    body.len() == BODY_HEX
        && sum.len() == CHECKSUM_HEX
        && body
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && sum == checksum(body)
}

pub fn looks_like_service_token(candidate: &str) -> bool {
    candidate.starts_with(PREFIX)
}

fn checksum(body: &str) -> String {
    let digest = Sha256::digest(format!("{PREFIX}{body}").as_bytes());
    hex::encode(&digest[..CHECKSUM_HEX / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_are_well_formed_unique_and_hashed() {
        let a = issue();
        let b = issue();
        assert_ne!(a.secret, b.secret);
        assert!(is_well_formed(&a.secret));
        assert_eq!(a.secret.len(), PREFIX.len() + BODY_HEX + 1 + CHECKSUM_HEX);
        assert_eq!(a.hash, hash(&a.secret));
        assert!(!a.hash.contains(&a.secret[4..20]));
    }

    #[test]
    fn one_changed_character_fails_the_checksum() {
        let token = issue().secret;
        let mut chars: Vec<char> = token.chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert!(!is_well_formed(&typo));
        assert!(!is_well_formed(&token[..token.len() - 1]));
        assert!(!is_well_formed("syt_"));
        assert!(!is_well_formed(&token.to_uppercase()));
    }
}
