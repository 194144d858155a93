//! Loopback ports for services that must be found at a known address before they start, or
//! again after a restart.
//!
//! Binding port 0 and handing the number on is racy: the kernel gives the same ephemeral
//! range to every process's port-0 binds and outgoing connections, so between a test
//! releasing a port (a service halted for an outage) and binding it again, another test may
//! take it — CI saw exactly that. Ports here come from below the ephemeral range, which the
//! kernel never assigns by itself, and each is claimed with a file lock that this process
//! holds until it exits, so no two test processes are given the same one.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Mutex;

/// Below Linux's default ephemeral range (32768–60999) and above well-known services.
const FIRST: u16 = 20_000;
const COUNT: u16 = 12_000;

/// Locks held for the life of the process: dropping one would free its port for others.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// A loopback address no other test process is given and nothing else was bound to.
pub fn reserve_port() -> SocketAddr {
    let dir = lock_dir();
    let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Processes start at different offsets so they rarely probe the same ports.
    let start = (std::process::id() as u64 * 7919 + held.len() as u64) % u64::from(COUNT);
    for step in 0..u64::from(COUNT) {
        let port = FIRST + ((start + step) % u64::from(COUNT)) as u16;
        let Ok(file) = File::create(dir.join(format!("{port}.lock"))) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Something outside this scheme may be listening there.
        if TcpListener::bind(addr).is_ok() {
            held.push(file);
            return addr;
        }
    }
    panic!(
        "no free loopback port between {FIRST} and {}",
        FIRST + COUNT
    )
}

fn lock_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("switchyard-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let ports: Vec<SocketAddr> = (0..5).map(|_| reserve_port()).collect();
        let mut unique: Vec<u16> = ports.iter().map(SocketAddr::port).collect();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        for addr in ports {
            assert!((FIRST..FIRST + COUNT).contains(&addr.port()));
            TcpListener::bind(addr).unwrap();
        }
    }
}
