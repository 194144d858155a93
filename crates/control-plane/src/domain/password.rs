//! Passwords: Argon2id (memory-hard) with the crate's recommended parameters and a random salt
//! per hash, stored in PHC string format so parameters can change without a migration.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 1024;

pub fn check_policy(password: &str) -> Result<(), String> {
    let len = password.chars().count();
    if len < MIN_LEN {
        Err(format!("password must be at least {MIN_LEN} characters"))
    } else if password.len() > MAX_LEN {
        Err(format!("password must be at most {MAX_LEN} bytes"))
    } else {
        Ok(())
    }
}

/// Hashes in PHC format. CPU- and memory-heavy: call from a blocking thread.
pub fn hash(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Constant-time verification against a stored PHC string. CPU-heavy, as [`hash`].
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A valid hash of a random password, verified against when the user does not exist so that
/// a login takes as long for unknown users as for wrong passwords.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash(&uuid::Uuid::new_v4().to_string()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_salt_differs() {
        let a = hash("correct horse battery").expect("hashes");
        let b = hash("correct horse battery").expect("hashes");
        assert_ne!(a, b, "a fresh salt per hash");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse battery!", &a));
        assert!(!verify("anything", "not a phc string"));
        assert!(!verify("anything", decoy_hash()));
    }

    #[test]
    fn policy_refuses_short_passwords() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("long enough pw").is_ok());
    }
}
