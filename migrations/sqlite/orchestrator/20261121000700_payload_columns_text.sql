-- Mirrors the PostgreSQL migration of the same version, which turns the json payload
-- columns into text. SQLite has kept them as TEXT from the start; the version exists so
-- that both folders stay in step.
SELECT 1;
