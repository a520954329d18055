//! Interpreter behaviour that the conformance corpus does not cover: the saga ledger and
//! rollback, cancel and terminate, operator repairs, idempotency keys and replay.

use serde_json::{Value, json};

use super::*;
use crate::driver::{self, Options, TaskOutcome};
use crate::model::Definition;

fn definition(json: Value) -> Definition {
    match crate::compile_value(&json) {
        Ok(c) => c.definition,
        Err(d) => panic!("test definition invalid:\n{d}"),
    }
}

fn task(resource: &str, next: Option<&str>, compensate: bool) -> Value {
    let mut t = json!({ "Type": "Task", "Resource": resource });
    match next {
        Some(n) => t["Next"] = json!(n),
        None => t["End"] = json!(true),
    }
    if compensate {
        t["Compensate"] = json!({
            "Resource": format!("{resource}Undo"),
            "Parameters": { "undo.$": "$.Input", "result.$": "$.Result" },
            "Retry": [{ "ErrorEquals": ["States.ALL"], "MaxAttempts": 1, "IntervalSeconds": 1 }]
        });
    } else {
        t["SagaRole"] = json!("readonly");
    }
    t
}

fn three_steps() -> Definition {
    definition(json!({
        "StartAt": "A",
        "States": {
            "A": task("grpc://p/s.v1.S/A", Some("B"), true),
            "B": task("grpc://p/s.v1.S/B", Some("C"), true),
            "C": task("grpc://p/s.v1.S/C", None, true),
        }
    }))
}

fn ok(call: &Call) -> TaskOutcome {
    TaskOutcome::Succeed(json!({ "from": call.state }))
}

fn fail(error: &str) -> TaskOutcome {
    TaskOutcome::Fail { error: error.into(), cause: Some(format!("{error} cause")), outcome_unknown: false }
}

fn compensations(outcome: &driver::Outcome) -> Vec<String> {
    outcome.calls.iter().filter(|c| c.compensates.is_some()).map(|c| c.state.clone()).collect()
}

fn run(def: &Definition, mut handler: impl FnMut(&Call, i64) -> TaskOutcome) -> driver::Outcome {
    driver::run(def, json!({ "order": 1 }), &mut handler, &Options::default()).expect("run finishes")
}

#[test]
fn a_failed_step_compensates_completed_steps_in_reverse_order() {
    let def = three_steps();
    let outcome = run(&def, |c, _| if c.state == "C" && c.compensates.is_none() { fail("C.Failed") } else { ok(c) });
    assert_eq!(outcome.status, Status::Compensated);
    assert_eq!(compensations(&outcome), vec!["B", "A"]);
    assert_eq!(outcome.error.as_deref(), Some("C.Failed"));
    let undo_b = outcome.calls.iter().find(|c| c.compensates.is_some() && c.state == "B").expect("B undone");
    assert_eq!(undo_b.input, json!({ "undo": { "from": "A" }, "result": { "from": "B" } }));
    let forward_b = outcome.calls.iter().find(|c| c.compensates.is_none() && c.state == "B").expect("B called");
    assert_eq!(undo_b.compensates.as_deref(), Some(forward_b.idempotency_key.as_str()));
    assert_eq!(undo_b.idempotency_key, format!("{}:compensate", forward_b.idempotency_key));
}

#[test]
fn a_definite_refusal_is_not_compensated_but_an_unknown_outcome_is() {
    let def = three_steps();
    let refused = run(&def, |c, _| if c.state == "B" && c.compensates.is_none() { fail("B.Declined") } else { ok(c) });
    assert_eq!(compensations(&refused), vec!["A"]);

    let unknown = run(&def, |c, _| {
        if c.state == "B" && c.compensates.is_none() {
            TaskOutcome::Fail { error: "States.Timeout".into(), cause: None, outcome_unknown: true }
        } else {
            ok(c)
        }
    });
    assert_eq!(compensations(&unknown), vec!["B", "A"]);
    let undo_b = unknown.calls.iter().find(|c| c.compensates.is_some() && c.state == "B").expect("B undone");
    assert_eq!(undo_b.input["result"], Value::Null, "an unknown outcome compensates with Result null");
}

#[test]
fn a_catch_that_ends_in_succeed_handles_the_failure_without_compensation() {
    let mut b = task("grpc://p/s.v1.S/B", Some("Done"), true);
    b["Catch"] = json!([{ "ErrorEquals": ["States.ALL"], "Next": "Handled" }]);
    let def = definition(json!({
        "StartAt": "A",
        "States": {
            "A": task("grpc://p/s.v1.S/A", Some("B"), true),
            "B": b,
            "Handled": { "Type": "Succeed" },
            "Done": { "Type": "Succeed" },
        }
    }));
    let outcome = run(&def, |c, _| if c.state == "B" { fail("B.Declined") } else { ok(c) });
    assert_eq!(outcome.status, Status::Succeeded);
    assert!(compensations(&outcome).is_empty());
}

#[test]
fn parallel_branches_roll_back_concurrently_each_in_reverse_after_newer_steps() {
    let branch = |prefix: &str| {
        json!({
            "StartAt": format!("{prefix}1"),
            "States": {
                format!("{prefix}1"): task(&format!("grpc://p/s.v1.S/{prefix}1"), Some(&format!("{prefix}2")), true),
                format!("{prefix}2"): task(&format!("grpc://p/s.v1.S/{prefix}2"), None, true),
            }
        })
    };
    let def = definition(json!({
        "StartAt": "Before",
        "States": {
            "Before": task("grpc://p/s.v1.S/Before", Some("Fan"), true),
            "Fan": { "Type": "Parallel", "Branches": [branch("X"), branch("Y")], "Next": "After" },
            "After": task("grpc://p/s.v1.S/After", Some("Last"), true),
            "Last": task("grpc://p/s.v1.S/Last", None, false),
        }
    }));
    // Drive by hand so concurrency is visible: answer every call of a step before the next.
    let mut ex = Execution::new();
    let mut now = 1_000;
    let start = Event::Started(Start {
        execution_id: "e1".into(),
        execution_name: "e1".into(),
        state_machine_id: "sm".into(),
        state_machine_name: "sm".into(),
        input: json!({}),
        seed: 1,
        redrive_count: 0,
        key_namespace: None,
        fork_at: None,
    });
    let mut batch = vec![start];
    let mut rounds: Vec<Vec<String>> = Vec::new();
    while !batch.is_empty() {
        let mut next = Vec::new();
        for event in batch {
            now += 1;
            let step = step(&def, &mut ex, Envelope { now_ms: now, event }).expect("step applies");
            let mut compensating = Vec::new();
            for action in step.actions {
                if let Action::Invoke(call) = action {
                    if call.compensates.is_some() {
                        compensating.push(call.state.clone());
                    }
                    let outcome = if call.state == "Last" {
                        Event::TaskFailed {
                            id: call.id,
                            error: "Last.Failed".into(),
                            cause: None,
                            outcome_unknown: false,
                        }
                    } else {
                        Event::TaskSucceeded { id: call.id, output: json!({}) }
                    };
                    next.push(outcome);
                }
            }
            if !compensating.is_empty() {
                rounds.push(compensating);
            }
        }
        batch = next;
    }
    assert_eq!(ex.status, Status::Compensated);
    assert_eq!(
        rounds,
        vec![
            vec!["After".to_string()],
            vec!["X2".into(), "Y2".into()],
            vec!["X1".into()],
            vec!["Y1".into()],
            vec!["Before".into()]
        ]
    );
}

#[test]
fn cancel_compensates_in_flight_work_and_terminate_does_not() {
    let def = three_steps();
    let begin = |ex: &mut Execution| {
        let start = Start {
            execution_id: "e2".into(),
            execution_name: "e2".into(),
            state_machine_id: "sm".into(),
            state_machine_name: "sm".into(),
            input: json!({}),
            seed: 3,
            redrive_count: 0,
            key_namespace: None,
            fork_at: None,
        };
        let s = step(&def, ex, Envelope { now_ms: 0, event: Event::Started(start) }).expect("start");
        let Some(Action::Invoke(a)) = s.actions.into_iter().next() else { panic!("A is called") };
        let s = step(&def, ex, Envelope { now_ms: 1, event: Event::TaskSucceeded { id: a.id, output: json!({}) } })
            .expect("A answers");
        assert!(s.actions.iter().any(|a| matches!(a, Action::Invoke(c) if c.state == "B")));
    };

    let mut cancelled = Execution::new();
    begin(&mut cancelled);
    let s = step(
        &def,
        &mut cancelled,
        Envelope { now_ms: 2, event: Event::Cancel { reason: Some("customer asked".into()) } },
    )
    .expect("cancel");
    let undone: Vec<&str> = s
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Invoke(c) if c.compensates.is_some() => Some(c.state.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(undone, vec!["B"], "B was in flight: its outcome is unknown, so it is undone first");
    assert!(s.actions.iter().any(|a| matches!(a, Action::Abandon { .. })));
    assert_eq!(cancelled.status, Status::Compensating);

    let mut terminated = Execution::new();
    begin(&mut terminated);
    let s = step(&def, &mut terminated, Envelope { now_ms: 2, event: Event::Terminate { reason: None } })
        .expect("terminate");
    assert!(!s.actions.iter().any(|a| matches!(a, Action::Invoke(_))));
    assert_eq!(terminated.status, Status::Terminated);
}

#[test]
fn a_stuck_compensation_blocks_older_ones_until_an_operator_acts() {
    let def = three_steps();
    let outcome = run(&def, |c, _| match (c.state.as_str(), c.compensates.is_some()) {
        ("C", false) => fail("C.Failed"),
        ("B", true) => fail("Undo.Broken"),
        _ => ok(c),
    });
    assert_eq!(outcome.status, Status::CompensationStuck);
    assert_eq!(compensations(&outcome), vec!["B", "B"], "B's undo retried once, and A's never started");

    let mut ex = outcome.execution.clone();
    let s = step(
        &def,
        &mut ex,
        Envelope { now_ms: 10_000_000, event: Event::SkipCompensation { reason: "refunded by hand".into() } },
    )
    .expect("skip applies");
    assert!(s.history.iter().any(|h| h.kind == EventKind::CompensationSkipped));
    let Some(Action::Invoke(undo_a)) = s.actions.iter().find(|a| matches!(a, Action::Invoke(_))).cloned() else {
        panic!("A's compensation starts once B is skipped")
    };
    assert_eq!(undo_a.state, "A");
    step(
        &def,
        &mut ex,
        Envelope { now_ms: 10_000_001, event: Event::TaskSucceeded { id: undo_a.id, output: json!({}) } },
    )
    .expect("A undone");
    assert_eq!(ex.status, Status::Compensated);
    let rollback = ex.rollback().expect("plan kept");
    assert!(matches!(rollback.steps[0].status, saga::StepStatus::Skipped { .. }));
}

#[test]
fn idempotency_keys_are_stable_across_retries_and_differ_across_visits() {
    let def = definition(json!({
        "StartAt": "Charge",
        "States": {
            "Charge": {
                "Type": "Task", "Resource": "grpc://p/s.v1.S/Charge", "SagaRole": "readonly",
                "Retry": [{ "ErrorEquals": ["Grpc.Unavailable"], "MaxAttempts": 2, "IntervalSeconds": 2, "BackoffRate": 3.0 }],
                "Next": "Again"
            },
            "Again": {
                "Type": "Choice",
                "Choices": [{ "Variable": "$.n", "NumericEquals": 1, "Next": "Charge" }],
                "Default": "Done"
            },
            "Done": { "Type": "Succeed" }
        }
    }));
    let mut answers = 0;
    let outcome = run(&def, |_, _| {
        answers += 1;
        match answers {
            1 | 2 => fail("Grpc.Unavailable"),
            3 => TaskOutcome::Succeed(json!({ "n": 1 })),
            _ => TaskOutcome::Succeed(json!({ "n": 2 })),
        }
    });
    assert_eq!(outcome.status, Status::Succeeded);
    let keys: Vec<&str> = outcome.calls.iter().map(|c| c.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), 4);
    assert!(keys[0] == keys[1] && keys[1] == keys[2], "retries share a key: {keys:?}");
    assert_ne!(keys[2], keys[3], "a second visit gets a new key");
    let attempts: Vec<u32> = outcome.calls.iter().map(|c| c.attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3, 1]);
    // Backoff of 2 s then 6 s (rate 3), all in virtual time.
    assert_eq!(outcome.elapsed_ms, 8_000);
}

#[test]
fn replaying_a_history_reproduces_it_exactly() {
    let def = definition(json!({
        "StartAt": "Fan",
        "States": {
            "Fan": {
                "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                "ItemSelector": { "id.$": "States.UUID()", "item.$": "$$.Map.Item.Value" },
                "ItemProcessor": { "StartAt": "Work", "States": {
                    "Work": {
                        "Type": "Task", "Resource": "grpc://p/s.v1.S/Work",
                        "Retry": [{ "ErrorEquals": ["States.ALL"], "JitterStrategy": "FULL", "MaxAttempts": 3 }],
                        "Compensate": { "Resource": "grpc://p/s.v1.S/Undo" },
                        "End": true
                    }
                }},
                "Next": "Pause"
            },
            "Pause": { "Type": "Wait", "Seconds": 30, "Next": "Boom" },
            "Boom": { "Type": "Fail", "Error": "Boom" }
        }
    }));
    let mut n = 0;
    let input = json!({ "items": [1, 2, 3, 4] });
    let outcome = driver::run(
        &def,
        input,
        &mut |c: &Call, _| {
            n += 1;
            if n % 3 == 0 && c.compensates.is_none() { fail("Flaky") } else { ok(c) }
        },
        &Options::default(),
    )
    .expect("runs");
    assert_eq!(outcome.status, Status::Compensated);

    let mut replayed = Execution::new();
    let mut history = Vec::new();
    for recorded in &outcome.history {
        if let Some(envelope) = recorded.as_input() {
            history.extend(step(&def, &mut replayed, envelope).expect("replays").history);
        }
    }
    assert_eq!(history, outcome.history);
    assert_eq!(replayed, outcome.execution);
}

#[test]
fn the_execution_timeout_fails_and_compensates() {
    let def = definition(json!({
        "StartAt": "A", "TimeoutSeconds": 5,
        "States": {
            "A": task("grpc://p/s.v1.S/A", Some("Sleep"), true),
            "Sleep": { "Type": "Wait", "Seconds": 60, "End": true }
        }
    }));
    let outcome = run(&def, |c, _| ok(c));
    assert_eq!(outcome.status, Status::Compensated);
    assert_eq!(outcome.error.as_deref(), Some("States.Timeout"));
    assert_eq!(compensations(&outcome), vec!["A"]);
}

#[test]
fn events_that_do_not_fit_are_refused_without_changing_anything() {
    let def = three_steps();
    let mut ex = Execution::new();
    assert_eq!(
        step(&def, &mut ex, Envelope { now_ms: 0, event: Event::TimerFired { id: 9 } }),
        Err(StepError::NotStarted)
    );
    let before = ex.clone();
    let start = Start {
        execution_id: "e".into(),
        execution_name: "e".into(),
        state_machine_id: "sm".into(),
        state_machine_name: "sm".into(),
        input: json!({}),
        seed: 0,
        redrive_count: 0,
        key_namespace: None,
        fork_at: None,
    };
    step(&def, &mut ex, Envelope { now_ms: 0, event: Event::Started(start.clone()) }).expect("starts");
    let snapshot = ex.clone();
    assert_eq!(
        step(&def, &mut ex, Envelope { now_ms: 0, event: Event::Started(start) }),
        Err(StepError::AlreadyStarted)
    );
    assert_eq!(
        step(&def, &mut ex, Envelope { now_ms: 0, event: Event::TaskSucceeded { id: 999, output: json!(1) } }),
        Err(StepError::UnknownWork(999))
    );
    assert_eq!(ex, snapshot);
    assert_ne!(before, snapshot);
}

#[test]
fn a_redrive_resumes_the_failed_state_with_the_same_idempotency_key() {
    let def = definition(json!({
        "StartAt": "Prepare",
        "States": {
            "Prepare": { "Type": "Pass", "Assign": { "seen": true }, "Result": { "ready": 1 }, "Next": "Ship" },
            "Ship": { "Type": "Task", "Resource": "grpc://p/s.v1.S/Ship", "SagaRole": "readonly", "End": true }
        }
    }));
    let outcome = run(&def, |_, _| fail("Grpc.Unavailable"));
    assert_eq!(outcome.status, Status::Failed);
    let mut ex = outcome.execution.clone();
    assert!(ex.can_redrive());
    let first_key = outcome.calls[0].idempotency_key.clone();
    let s = step(&def, &mut ex, Envelope { now_ms: 5_000_000, event: Event::Redrive }).expect("redrive applies");
    assert_eq!(ex.status, Status::Running);
    assert_eq!(ex.redrive_count(), 1);
    assert!(s.history.iter().any(|h| h.kind == EventKind::ExecutionRedriven));
    let Some(Action::Invoke(call)) = s.actions.iter().find(|a| matches!(a, Action::Invoke(_))).cloned() else {
        panic!("the failed task is called again")
    };
    assert_eq!(call.state, "Ship");
    assert_eq!(call.idempotency_key, first_key, "a redrive keeps the visit's key");
    assert_eq!(call.input, json!({ "ready": 1 }));
    step(
        &def,
        &mut ex,
        Envelope { now_ms: 5_000_001, event: Event::TaskSucceeded { id: call.id, output: json!({ "ok": true }) } },
    )
    .expect("answer applies");
    assert_eq!(ex.status, Status::Succeeded);
    assert_eq!(
        step(&def, &mut ex, Envelope { now_ms: 5_000_002, event: Event::Redrive }),
        Err(StepError::InvalidInStatus(Status::Succeeded, "redrive"))
    );
}

#[test]
fn a_deterministic_failure_cannot_be_redriven() {
    let def = definition(json!({ "StartAt": "No", "States": { "No": { "Type": "Fail", "Error": "Nope" } } }));
    let outcome = run(&def, |c, _| ok(c));
    assert_eq!(outcome.status, Status::Failed);
    assert!(!outcome.execution.can_redrive());
}

#[test]
fn an_oversized_answer_still_owes_its_compensation() {
    let def = three_steps();
    let big = "x".repeat(PAYLOAD_LIMIT_BYTES + 10);
    let outcome = run(&def, |c, _| {
        if c.state == "B" && c.compensates.is_none() { TaskOutcome::Succeed(json!({ "blob": big })) } else { ok(c) }
    });
    assert_eq!(outcome.error.as_deref(), Some("States.DataLimitExceeded"));
    assert_eq!(compensations(&outcome), vec!["B", "A"]);
    let undo_b = outcome.calls.iter().find(|c| c.compensates.is_some() && c.state == "B").expect("B undone");
    assert_eq!(undo_b.input["result"], Value::Null);
}

#[test]
fn a_history_that_reaches_its_limit_fails_and_compensates() {
    let def = definition(json!({
        "StartAt": "A",
        "States": {
            "A": task("grpc://p/s.v1.S/A", Some("Loop"), true),
            "Loop": { "Type": "Pass", "Next": "Loop2" },
            "Loop2": { "Type": "Pass", "Next": "Loop" }
        }
    }));
    let outcome = run(&def, |c, _| ok(c));
    assert_eq!(outcome.status, Status::Compensated);
    assert_eq!(outcome.error.as_deref(), Some("States.DataLimitExceeded"));
    assert_eq!(compensations(&outcome), vec!["A"]);
    assert!(outcome.history.len() as u64 <= HISTORY_EVENT_LIMIT + 10);
}

#[test]
fn a_fork_reuses_the_steps_before_its_state_and_runs_on_with_its_own_keys() {
    let def = three_steps();
    // The original fails at C after A and B: FAILED is not possible with compensations, so
    // fork a SUCCEEDED run instead and check keys and the copied history.
    let original = run(&def, |c, _| ok(c));
    assert_eq!(original.status, Status::Succeeded);
    let forked = fork::fork(&def, &original.history, "B", "fork-1", 9_000_000).expect("forks");
    assert_eq!(forked.execution.status, Status::Running);
    let kinds: Vec<EventKind> = forked.history.iter().map(|h| h.kind).collect();
    assert!(kinds.contains(&EventKind::ExecutionForked));
    let Some(Action::Invoke(call)) = forked.actions.iter().find(|a| matches!(a, Action::Invoke(_))).cloned() else {
        panic!("B is called again")
    };
    assert_eq!(call.state, "B");
    assert!(call.idempotency_key.starts_with("fork-1:"), "{}", call.idempotency_key);
    // A's result is copied, not called again: only A's TaskSucceeded comes from the original.
    let copied = forked.history.iter().filter(|h| h.kind == EventKind::TaskSucceeded).count();
    assert_eq!(copied, 1);

    // If the fork then fails, A is compensated under the original's key.
    let mut ex = forked.execution.clone();
    let s = step(
        &def,
        &mut ex,
        Envelope {
            now_ms: 9_000_001,
            event: Event::TaskFailed { id: call.id, error: "B.Refused".into(), cause: None, outcome_unknown: false },
        },
    )
    .expect("answer applies");
    let Some(Action::Invoke(undo)) = s.actions.iter().find(|a| matches!(a, Action::Invoke(_))).cloned() else {
        panic!("A is compensated")
    };
    let original_a = original.calls.iter().find(|c| c.state == "A").expect("A was called");
    assert_eq!(undo.compensates.as_deref(), Some(original_a.idempotency_key.as_str()));

    // The fork's own history replays to itself.
    let mut replayed = Execution::new();
    let mut again = Vec::new();
    for h in &forked.history {
        if let Some(envelope) = h.as_input() {
            again.extend(step(&def, &mut replayed, envelope).expect("replays").history);
        }
    }
    assert_eq!(again, forked.history);
}

#[test]
fn a_fork_needs_a_state_the_execution_reached() {
    let def = three_steps();
    let original = run(&def, |c, _| if c.state == "A" { fail("A.Refused") } else { ok(c) });
    assert_eq!(fork::fork(&def, &original.history, "C", "f", 1).err(), Some(fork::ForkError::NotReached("C".into())));
    assert_eq!(
        fork::fork(&def, &original.history, "Nope", "f", 1).err(),
        Some(fork::ForkError::UnknownState("Nope".into()))
    );
}
