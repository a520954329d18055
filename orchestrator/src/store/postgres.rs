//! PostgreSQL implementation of the store (in progress).
