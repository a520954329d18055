-- The W3C trace context (traceparent, tracestate) a start request carried, kept with the
-- execution so that whichever replica continues it, after a crash too, adds its spans to the
-- caller's trace. NULL when the caller sent none (the trace id is then the execution id).
ALTER TABLE sagaflow_executions ADD COLUMN traceparent TEXT;
ALTER TABLE sagaflow_executions ADD COLUMN tracestate TEXT;
