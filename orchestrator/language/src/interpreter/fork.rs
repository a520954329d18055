//! Forking: a new execution that keeps an original's history before a top-level state and
//! runs on from there. The copied steps are not called again: the original's recorded
//! answers are replayed, under the original's idempotency keys (so if the fork fails, their
//! compensations undo the effects the original made). From the fork state on, calls carry
//! the fork's own keys.

use super::{Action, Envelope, Event, Execution, HistoryEvent, Step, StepError, step};
use crate::model::Definition;

/// A fork, ready to be stored and continued.
#[derive(Debug, Clone)]
pub struct Forked {
    pub execution: Execution,
    /// The fork's history: the copied prefix, then `ExecutionForked` and the fork state's start.
    pub history: Vec<HistoryEvent>,
    /// What to do now: the outstanding calls and timers.
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForkError {
    #[error("the recorded history has no ExecutionStarted event")]
    NoStart,
    #[error("\"{0}\" is not a top-level state of the definition")]
    UnknownState(String),
    #[error("the execution never entered \"{0}\" at the top level, so there is nothing to fork from")]
    NotReached(String),
    #[error("the recorded history does not replay: {0}")]
    Replay(#[from] StepError),
}

/// Fork the execution recorded in `recorded` at top-level `state`, as execution `new_id`.
pub fn fork(
    definition: &Definition,
    recorded: &[HistoryEvent],
    state: &str,
    new_id: &str,
    now_ms: i64,
) -> Result<Forked, ForkError> {
    if definition.machine.state(state).is_none() {
        return Err(ForkError::UnknownState(state.to_owned()));
    }
    let mut inputs = recorded.iter().filter_map(HistoryEvent::as_input);
    let Some(Envelope { now_ms: started_at, event: Event::Started(mut start) }) = inputs.next() else {
        return Err(ForkError::NoStart);
    };
    let original_keys = start.key_namespace.take().unwrap_or_else(|| start.execution_id.clone());
    start.execution_id = new_id.to_owned();
    start.execution_name = new_id.to_owned();
    start.key_namespace = Some(original_keys);
    start.fork_at = Some(state.to_owned());
    start.redrive_count = 0;

    let mut execution = Execution::new();
    let mut history = Vec::new();
    history.extend(
        step(definition, &mut execution, Envelope { now_ms: started_at, event: Event::Started(start) })?.history,
    );
    while !execution.awaiting_fork() {
        let Some(envelope) = inputs.next() else {
            return Err(ForkError::NotReached(state.to_owned()));
        };
        if matches!(envelope.event, Event::Redrive | Event::ResumeFork) {
            // A later redrive or fork of the original is not part of the prefix.
            continue;
        }
        let Step { history: more, .. } = step(definition, &mut execution, envelope)?;
        history.extend(more);
    }
    history.extend(step(definition, &mut execution, Envelope { now_ms, event: Event::ResumeFork })?.history);
    let actions = execution.outstanding();
    Ok(Forked { execution, history, actions })
}
