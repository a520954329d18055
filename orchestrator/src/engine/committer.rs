//! Group commit: every actor hands its transition to one committer task, which commits
//! whatever is waiting in one store call (one statement, one transaction, one fsync). Under
//! load many executions share each fsync; alone, a transition commits at once.
//!
//! A batch is all or nothing in the store, so a transition fenced out by a lost lease would
//! sink the others: it is answered `LeaseLost` and the rest are committed again without it.
//!
//! New executions are grouped the same way by a second task ([`Committer::create`]): starts
//! arriving together are inserted with one statement, which the store answers per start.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::store::{Created, NewExecution, Store, StoreError, Transition};

/// Most transitions in one commit: enough to share an fsync widely, small enough to keep
/// one statement's arrays and its lock set modest.
const MAX_BATCH: usize = 128;

/// Why a commit did not happen: the error, and the transition back to retry it (none when
/// the committer stopped for shutdown before answering).
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) error: StoreError,
    pub(crate) transition: Option<Box<Transition>>,
}

/// What a commit answers: the transition back once it is committed (its history is still
/// needed for telemetry), or why not.
pub(crate) type Outcome = Result<Transition, Failed>;

struct Request {
    transition: Transition,
    reply: oneshot::Sender<Outcome>,
}

struct CreateRequest {
    new: NewExecution,
    first: Transition,
    reply: oneshot::Sender<Result<Created, StoreError>>,
}

/// The handle actors commit through, and starts create through.
#[derive(Clone)]
pub(crate) struct Committer {
    tx: mpsc::Sender<Request>,
    create_tx: mpsc::Sender<CreateRequest>,
}

impl Committer {
    pub(crate) fn spawn(
        store: std::sync::Arc<dyn Store>,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Committer {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let (create_tx, create_rx) = mpsc::channel(4 * MAX_BATCH);
        tracker.spawn(run(store.clone(), rx, cancel.clone()));
        tracker.spawn(run_creations(store, create_rx, cancel));
        Committer { tx, create_tx }
    }

    /// Insert a new execution with its first transition (with whatever other starts are
    /// waiting), or find the existing one for its id or idempotency key.
    pub(crate) async fn create(&self, new: NewExecution, first: Transition) -> Result<Created, StoreError> {
        let shutting_down = || StoreError::Unavailable("the engine is shutting down".into());
        let (reply, answer) = oneshot::channel();
        if self.create_tx.send(CreateRequest { new, first, reply }).await.is_err() {
            return Err(shutting_down());
        }
        answer.await.unwrap_or_else(|_| Err(shutting_down()))
    }

    /// Commit one transition (with whatever others are waiting).
    pub(crate) async fn commit(&self, transition: Transition) -> Outcome {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Request { transition, reply }).await.is_err() {
            return Err(Failed {
                error: StoreError::Unavailable("the engine is shutting down".into()),
                transition: None,
            });
        }
        // A dropped answer means the committer stopped (shutdown) before committing it.
        answer.await.unwrap_or_else(|_| {
            Err(Failed { error: StoreError::Unavailable("the engine is shutting down".into()), transition: None })
        })
    }
}

async fn run(store: std::sync::Arc<dyn Store>, mut rx: mpsc::Receiver<Request>, cancel: CancellationToken) {
    loop {
        let first = tokio::select! {
            request = rx.recv() => match request { Some(r) => r, None => return },
            _ = cancel.cancelled() => return,
        };
        let mut transitions = vec![first.transition];
        let mut replies = vec![first.reply];
        while transitions.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => {
                    transitions.push(request.transition);
                    replies.push(request.reply);
                }
                Err(_) => break,
            }
        }
        commit_batch(store.as_ref(), transitions, replies).await;
    }
}

async fn run_creations(
    store: std::sync::Arc<dyn Store>,
    mut rx: mpsc::Receiver<CreateRequest>,
    cancel: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            request = rx.recv() => match request { Some(r) => r, None => return },
            _ = cancel.cancelled() => return,
        };
        let mut batch = vec![(first.new, first.first)];
        let mut replies = vec![first.reply];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => {
                    batch.push((request.new, request.first));
                    replies.push(request.reply);
                }
                Err(_) => break,
            }
        }
        let answers = store.create_executions(batch).await;
        for (answer, reply) in answers.into_iter().zip(replies) {
            let _ = reply.send(answer);
        }
    }
}

/// Commit a batch; answer each transition. Fenced ones are taken out and the rest retried.
async fn commit_batch(store: &dyn Store, mut transitions: Vec<Transition>, mut replies: Vec<oneshot::Sender<Outcome>>) {
    loop {
        if transitions.is_empty() {
            return;
        }
        match store.commit(&transitions).await {
            Ok(()) => {
                debug!(batch = transitions.len(), "committed");
                for (t, reply) in transitions.into_iter().zip(replies) {
                    let _ = reply.send(Ok(t));
                }
                return;
            }
            Err(StoreError::LeaseLost(id)) if transitions.len() > 1 => {
                let mut kept_t = Vec::with_capacity(transitions.len());
                let mut kept_r = Vec::with_capacity(replies.len());
                for (t, r) in transitions.into_iter().zip(replies) {
                    if t.execution_id == id {
                        let _ = r.send(Err(Failed { error: StoreError::LeaseLost(id), transition: Some(Box::new(t)) }));
                    } else {
                        kept_t.push(t);
                        kept_r.push(r);
                    }
                }
                transitions = kept_t;
                replies = kept_r;
            }
            Err(StoreError::Database(_) | StoreError::Corrupt(_)) if transitions.len() > 1 => {
                // Something wrong with one transition (a gap would be an engine bug) must not
                // stop the others: commit them one by one so each gets its own answer.
                for (t, r) in transitions.into_iter().zip(replies) {
                    let outcome = match store.commit(std::slice::from_ref(&t)).await {
                        Ok(()) => Ok(t),
                        Err(e) => Err(Failed { error: e, transition: Some(Box::new(t)) }),
                    };
                    let _ = r.send(outcome);
                }
                return;
            }
            Err(e) => {
                // Every transition hears the same error and gets itself back to retry.
                for (t, r) in transitions.into_iter().zip(replies) {
                    let _ = r.send(Err(Failed { error: e.clone(), transition: Some(Box::new(t)) }));
                }
                // A failing database is not hammered by the committer itself.
                if matches!(e, StoreError::Unavailable(_)) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                return;
            }
        }
    }
}
