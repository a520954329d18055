-- Mirrors the PostgreSQL migration of the same version, which drops the history and timer
-- foreign keys and switches JSON columns to lz4. SQLite can drop a foreign key only by
-- rebuilding the table, and its commits are not the bottleneck of the embedded store, so
-- nothing changes here; the version exists so that both folders stay in step.
SELECT 1;
