//! Predefined error names of the States Language and the matching rules of `ErrorEquals`.

/// Matches any error except `States.DataLimitExceeded` and `States.Runtime`, which are terminal.
pub const ALL: &str = "States.ALL";
pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
pub const TIMEOUT: &str = "States.Timeout";
/// Matches any error of a Task except `States.Timeout`.
pub const TASK_FAILED: &str = "States.TaskFailed";
pub const PERMISSIONS: &str = "States.Permissions";
pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
pub const QUERY_EVALUATION_ERROR: &str = "States.QueryEvaluationError";
pub const BRANCH_FAILED: &str = "States.BranchFailed";
pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";
pub const ITEM_READER_FAILED: &str = "States.ItemReaderFailed";
pub const RESULT_WRITER_FAILED: &str = "States.ResultWriterFailed";
pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
pub const RUNTIME: &str = "States.Runtime";

/// Every predefined name, for validation of `ErrorEquals`.
pub const PREDEFINED: [&str; 16] = [
    ALL,
    HEARTBEAT_TIMEOUT,
    TIMEOUT,
    TASK_FAILED,
    PERMISSIONS,
    RESULT_PATH_MATCH_FAILURE,
    PARAMETER_PATH_FAILURE,
    QUERY_EVALUATION_ERROR,
    BRANCH_FAILED,
    NO_CHOICE_MATCHED,
    INTRINSIC_FAILURE,
    EXCEED_TOLERATED_FAILURE_THRESHOLD,
    ITEM_READER_FAILED,
    RESULT_WRITER_FAILED,
    DATA_LIMIT_EXCEEDED,
    RUNTIME,
];

/// Errors that no Retry or Catch can handle: they always end the execution.
pub fn is_terminal(error: &str) -> bool {
    error == DATA_LIMIT_EXCEEDED || error == RUNTIME
}

/// Whether a retrier or catcher listing `error_equals` handles `error`.
/// `from_task` says the error came from a Task's own work (so `States.TaskFailed` applies).
pub fn matches(error_equals: &[String], error: &str, from_task: bool) -> bool {
    if is_terminal(error) {
        return false;
    }
    error_equals
        .iter()
        .any(|name| name == error || name == ALL || (name == TASK_FAILED && from_task && error != TIMEOUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn all_matches_everything_but_terminal_errors() {
        assert!(matches(&names(&[ALL]), "Payment.CardDeclined", true));
        assert!(matches(&names(&[ALL]), TIMEOUT, true));
        assert!(!matches(&names(&[ALL]), RUNTIME, true));
        assert!(!matches(&names(&[ALL]), DATA_LIMIT_EXCEEDED, true));
    }

    #[test]
    fn task_failed_excludes_timeouts() {
        assert!(matches(&names(&[TASK_FAILED]), "Grpc.Unavailable", true));
        assert!(!matches(&names(&[TASK_FAILED]), TIMEOUT, true));
        assert!(!matches(&names(&[TASK_FAILED]), "Custom", false));
    }
}
