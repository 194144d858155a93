//! Group commit for completions: concurrent `CompleteTask` calls are gathered and applied in
//! one transaction (up to [`MAX_BATCH`]), each answered with its own result. A lone call is
//! applied at once; under load the batches grow by themselves, because completions arrive
//! while the previous commit is in flight.

use tokio::sync::{mpsc, oneshot};

use super::{Completion, Engine};
use crate::error::{Error, Result};

pub const MAX_BATCH: usize = 256;

type Waiting = (Completion, oneshot::Sender<Result<()>>);

#[derive(Clone)]
pub struct Batcher {
    sender: mpsc::Sender<Waiting>,
}

impl Batcher {
    pub fn spawn(engine: Engine) -> Batcher {
        let (sender, mut receiver) = mpsc::channel::<Waiting>(MAX_BATCH * 4);
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (completions, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                match engine.complete_many(completions).await {
                    Ok(results) => {
                        for (reply, result) in replies.into_iter().zip(results) {
                            let _ = reply.send(result);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "completion batch failed; every caller retries");
                        let message = error.to_string();
                        for reply in replies {
                            let _ = reply.send(Err(Error::Internal(message.clone())));
                        }
                    }
                }
            }
        });
        Batcher { sender }
    }

    pub async fn complete(&self, done: Completion) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((done, reply))
            .await
            .map_err(|_| Error::Internal("the completion batcher stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Internal("the completion batcher dropped a call".into()))?
    }
}
