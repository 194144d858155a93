//! Short-lived access tokens for people who log in with a password: HS256 JWTs carrying the
//! user and organization. Role and existence are re-read at authentication, so a demoted or
//! deleted user loses access at once; the signature only proves the login happened.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

const ISSUER: &str = "switchyard";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    /// User id.
    sub: String,
    org: String,
    iat: i64,
    exp: i64,
}

/// The verified content of an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user_id: String,
    pub org_id: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(key: &[u8], ttl: Duration) -> Signer {
        Signer {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            ttl,
        }
    }

    /// A token for `user_id` in `org_id`, and when it expires.
    pub fn issue(&self, user_id: &str, org_id: &str) -> Result<(String, DateTime<Utc>), String> {
        self.issue_at(user_id, org_id, Utc::now())
    }

    fn issue_at(
        &self,
        user_id: &str,
        org_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>), String> {
        let expires_at = now + chrono::Duration::from_std(self.ttl).map_err(|e| e.to_string())?;
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: user_id.to_owned(),
            org: org_id.to_owned(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| e.to_string())?;
        Ok((token, expires_at))
    }

    /// `None` for a bad signature, another algorithm, another issuer or an expired token.
    pub fn verify(&self, token: &str) -> Option<Verified> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok()?;
        Some(Verified {
            user_id: data.claims.sub,
            org_id: data.claims.org,
            expires_at: DateTime::from_timestamp(data.claims.exp, 0)?,
        })
    }
}

/// Whether `candidate` has the shape of a JWT (three base64url parts).
pub fn looks_like_jwt(candidate: &str) -> bool {
    candidate.starts_with("eyJ") && candidate.matches('.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_tampering_fails() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60));
        let (token, expires_at) = signer.issue("u1", "o1").expect("issues");
        assert!(looks_like_jwt(&token));
        let verified = signer.verify(&token).expect("verifies");
        assert_eq!(verified.user_id, "u1");
        assert_eq!(verified.org_id, "o1");
        assert_eq!(verified.expires_at.timestamp(), expires_at.timestamp());

        let other = Signer::new(b"another key of thirty-two bytes!", Duration::from_secs(60));
        assert_eq!(other.verify(&token), None);
        let mut tampered = token.clone();
        tampered.push('x');
        assert_eq!(signer.verify(&tampered), None);
    }

    #[test]
    fn expired_tokens_fail() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60));
        let an_hour_ago = Utc::now() - chrono::Duration::hours(1);
        let (token, _) = signer.issue_at("u1", "o1", an_hour_ago).expect("issues");
        assert_eq!(signer.verify(&token), None);
    }
}
