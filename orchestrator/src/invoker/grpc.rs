//! The gRPC invoker (in progress).
