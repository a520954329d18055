-- Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d).
-- The orchestrator uses the `sagaflow` database (POSTGRES_DB); each demo participant gets a
-- database of its own, as services owned by different teams would. Each component applies
-- its own migrations at start, so nothing else is created here.
CREATE DATABASE payment;
CREATE DATABASE inventory;
CREATE DATABASE fraud;
CREATE DATABASE fulfillment;
