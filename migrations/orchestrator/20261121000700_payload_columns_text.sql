-- Payload columns hold JSON as text (decision 0022). The engine writes only text it
-- serialized itself and never queries inside a payload, so the json type's validation
-- bought nothing and was the busiest function of PostgreSQL under load (json_lex, about
-- a tenth of its CPU). The text stays byte for byte what the engine wrote, as before.
-- json -> text has no binary-coercible cast: this rewrites both tables once.
-- The inbox keeps json: requests come from clients, and it is not on the hot path.
ALTER TABLE sagaflow.executions
    ALTER COLUMN input TYPE text,
    ALTER COLUMN output TYPE text,
    ALTER COLUMN snapshot TYPE text;
ALTER TABLE sagaflow.history
    ALTER COLUMN details TYPE text,
    ALTER COLUMN cause TYPE text;

-- A type change resets the columns' compression; set lz4 again where the server has it.
DO $$
BEGIN
    ALTER TABLE sagaflow.executions ALTER COLUMN snapshot SET COMPRESSION lz4;
    ALTER TABLE sagaflow.executions ALTER COLUMN input SET COMPRESSION lz4;
    ALTER TABLE sagaflow.executions ALTER COLUMN output SET COMPRESSION lz4;
    ALTER TABLE sagaflow.history ALTER COLUMN details SET COMPRESSION lz4;
    ALTER TABLE sagaflow.history ALTER COLUMN cause SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available on this server; payload columns keep pglz compression';
END
$$;
