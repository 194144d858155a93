//! Process signals and graceful drain. SIGTERM or SIGINT starts the drain; a second signal
//! during the drain exits at once.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Cancelled when the process should stop. Clone it into every component.
pub type Shutdown = CancellationToken;

/// Cancels `shutdown` on the first SIGTERM/SIGINT and exits the process with 130 on a second.
pub fn on_signals(shutdown: Shutdown) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received, draining");
        shutdown.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal received, exiting without drain");
        #[allow(clippy::disallowed_methods)]
        // the one place a hard exit is what the user asked for
        std::process::exit(130);
    });
}

/// Ends a binary's runtime once `main`'s work is done. Dropping it would wait without limit
/// for blocking work still running, with the signal handler gone by then: one stuck task
/// would keep the process alive, and deaf to Ctrl-C, after everything else had stopped.
pub fn end_runtime(runtime: tokio::runtime::Runtime) {
    runtime.shutdown_timeout(Duration::from_secs(5));
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Cannot install handlers (should not happen): fall back to Ctrl-C only.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs `work` to completion, but once `shutdown` fires gives it at most `grace` more; warns
/// and returns `None` when the grace period runs out first.
pub async fn drain_within<F: Future>(
    what: &str,
    work: F,
    shutdown: &Shutdown,
    grace: Duration,
) -> Option<F::Output> {
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => return Some(out),
        _ = shutdown.cancelled() => {}
    }
    match tokio::time::timeout(grace, work).await {
        Ok(out) => Some(out),
        Err(_) => {
            tracing::warn!(
                component = what,
                grace_ms = grace.as_millis() as u64,
                "drain exceeded the grace period"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_returns_finished_work() {
        let shutdown = Shutdown::new();
        let out = drain_within("t", async { 7 }, &shutdown, Duration::from_millis(10)).await;
        assert_eq!(out, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_after_grace() {
        let shutdown = Shutdown::new();
        shutdown.cancel();
        let out = drain_within(
            "t",
            std::future::pending::<()>(),
            &shutdown,
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(out, None);
    }

    #[tokio::test(start_paused = true)]
    async fn drain_lets_slow_work_finish_within_grace() {
        let shutdown = Shutdown::new();
        shutdown.cancel();
        let out = drain_within(
            "t",
            async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                "done"
            },
            &shutdown,
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(out, Some("done"));
    }
}
