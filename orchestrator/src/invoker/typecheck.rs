//! Checks a definition against its participants' message types (DESIGN §2: "where the
//! types are known, the validator checks Parameters field names against them"). The types
//! come from each participant's reflection, so this needs the participants reachable; a
//! participant that is not is reported as unchecked rather than as a problem.

use sagaflow_language::Definition;
use sagaflow_language::model::{StateKind, StateMachine};

use super::grpc::{GrpcInvoker, json::unknown_parameter_fields, parse_resource};

/// One finding about a definition's field names, or a task that could not be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeFinding {
    /// JSON pointer of the Parameters entry (`/States/Charge/Parameters/amountCent.$`).
    pub pointer: String,
    pub state: String,
    pub message: String,
    /// False when the task could not be checked (participant unreachable, unknown method).
    pub is_problem: bool,
}

/// Check every `grpc://` Task (and its compensation) of `definition`.
pub async fn check_definition(invoker: &GrpcInvoker, definition: &Definition) -> Vec<TypeFinding> {
    let mut findings = Vec::new();
    check_machine(invoker, &definition.machine, "", &mut findings).await;
    findings
}

fn check_machine<'a>(
    invoker: &'a GrpcInvoker,
    machine: &'a StateMachine,
    prefix: &'a str,
    findings: &'a mut Vec<TypeFinding>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        for (name, state) in &machine.states {
            let base = format!("{prefix}/States/{}", escape(name));
            match &state.kind {
                StateKind::Task(task) => {
                    if let Some(params) = &task.parameters {
                        check_call(
                            invoker,
                            &task.resource,
                            params.raw(),
                            name,
                            &format!("{base}/Parameters"),
                            findings,
                        )
                        .await;
                    }
                    if let Some(compensate) = &task.compensate
                        && let Some(params) = &compensate.parameters
                    {
                        let at = format!("{base}/Compensate/Parameters");
                        check_call(invoker, &compensate.resource, params.raw(), name, &at, findings).await;
                    }
                }
                StateKind::Parallel(p) => {
                    for (i, branch) in p.branches.iter().enumerate() {
                        check_machine(invoker, branch, &format!("{base}/Branches/{i}"), findings).await;
                    }
                }
                StateKind::Map(m) => {
                    check_machine(invoker, &m.processor, &format!("{base}/ItemProcessor"), findings).await;
                }
                _ => {}
            }
        }
    })
}

async fn check_call(
    invoker: &GrpcInvoker,
    resource: &str,
    parameters: &serde_json::Value,
    state: &str,
    pointer: &str,
    findings: &mut Vec<TypeFinding>,
) {
    let Ok(parsed) = parse_resource(resource) else { return };
    let method = match invoker.method(&parsed).await {
        Ok(method) => method,
        Err(e) => {
            findings.push(TypeFinding {
                pointer: pointer.to_owned(),
                state: state.to_owned(),
                message: format!("not checked against {resource}: {e}"),
                is_problem: false,
            });
            return;
        }
    };
    for unknown in unknown_parameter_fields(&method.input(), parameters) {
        // The key may be written with its `.$` suffix: point at it as written.
        let mut inner = json_path_to_pointer(&unknown.path);
        if parameters.pointer(&inner).is_none() && parameters.pointer(&format!("{inner}.$")).is_some() {
            inner.push_str(".$");
        }
        let hint = unknown.suggestion.as_ref().map(|s| format!(" (did you mean \"{s}\"?)")).unwrap_or_default();
        findings.push(TypeFinding {
            pointer: format!("{pointer}{inner}"),
            state: state.to_owned(),
            message: format!(
                "{} has no field \"{}\"{hint}; its fields are {}",
                unknown.message_type,
                unknown.field,
                unknown.known_fields.join(", ")
            ),
            is_problem: true,
        });
    }
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// `$.items[0].skuu` → `/items/0/skuu`.
fn json_path_to_pointer(path: &str) -> String {
    let mut out = String::new();
    for part in path.trim_start_matches('$').split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        while let Some(open) = rest.find('[') {
            out.push('/');
            out.push_str(&escape(&rest[..open]));
            let close = rest[open..].find(']').map(|c| open + c).unwrap_or(rest.len());
            out.push('/');
            out.push_str(&rest[open + 1..close]);
            rest = rest.get(close + 1..).unwrap_or("");
        }
        if !rest.is_empty() {
            out.push('/');
            out.push_str(&escape(rest));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_paths_become_pointers() {
        assert_eq!(super::json_path_to_pointer("$.items[0].skuu"), "/items/0/skuu");
        assert_eq!(super::json_path_to_pointer("$.amountCent"), "/amountCent");
    }
}
