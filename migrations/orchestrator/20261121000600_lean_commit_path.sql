-- The commit path, measured with `sagaflow bench` (docs/performance.md, decision 0019).
--
-- 1. History and timer rows are only ever written by the statements that create or update
--    their execution's row in the same statement (fenced by owner and epoch), so their
--    foreign keys checked nothing those statements do not already guarantee, at the price of
--    one trigger and one lookup of the execution row per inserted history event (about 20 per
--    saga). Nothing deletes executions. The inbox keeps its key: a request for an unknown
--    execution is refused by it.
ALTER TABLE sagaflow.history DROP CONSTRAINT history_execution_id_fkey;
ALTER TABLE sagaflow.timers DROP CONSTRAINT timers_execution_id_fkey;

-- 2. The snapshot (2-3 KiB for a small saga, rewritten by every transition) is compressed by
--    PostgreSQL when the row passes 2 KiB; pglz was the server's busiest function under load.
--    lz4 compresses about as well at a fraction of the CPU. A server built without lz4 keeps
--    pglz.
DO $$
BEGIN
    ALTER TABLE sagaflow.executions ALTER COLUMN snapshot SET COMPRESSION lz4;
    ALTER TABLE sagaflow.executions ALTER COLUMN input SET COMPRESSION lz4;
    ALTER TABLE sagaflow.executions ALTER COLUMN output SET COMPRESSION lz4;
    ALTER TABLE sagaflow.history ALTER COLUMN details SET COMPRESSION lz4;
    ALTER TABLE sagaflow.history ALTER COLUMN cause SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available on this server; JSON columns keep pglz compression';
END
$$;
