-- alive_worker 1.1 -> 1.2: trust (SECURITY.md) and what the status view adds.
-- A fresh CREATE EXTENSION runs 1.0, 1.1 and then this script, so that
-- installed and updated databases have the same objects.  Complain if this
-- script is run directly, not by CREATE or ALTER EXTENSION.
\echo Use "ALTER EXTENSION alive_worker UPDATE TO '1.2'" to load this file. \quit

-- hooks (issue 12): status() gains the hook's failures and times, appended
-- after the columns of 1.0.  A function's result type cannot change in
-- place: drop the view and the function, then create both again as 1.0 and
-- 1.1 made them, with the same comments and grants.
DROP VIEW workers;
DROP FUNCTION status();

CREATE FUNCTION status(
    OUT database text,
    OUT role text,
    OUT target_table text,
    OUT tick_interval interval,
    OUT state text,
    OUT pid integer,
    OUT started_at timestamptz,
    OUT ticks_ok bigint,
    OUT ticks_failed bigint,
    OUT ticks_skipped bigint,
    OUT last_tick_at timestamptz,
    OUT last_ok_at timestamptz,
    OUT last_error_sqlstate text,
    OUT last_error_message text,
    OUT last_error_at timestamptz,
    OUT next_tick_at timestamptz,
    OUT tick_ms_p50 double precision,
    OUT tick_ms_p99 double precision,
    -- hooks (issue 12)
    OUT hook_failures bigint,
    OUT last_hook_error text,
    OUT last_hook_error_at timestamptz,
    OUT hook_ms_p50 double precision,
    OUT hook_ms_p99 double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'alive_worker_status'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION status() IS
    'One row per configured alive worker, running or not, read from shared memory';

CREATE VIEW workers AS
    SELECT s.*,
           CASE WHEN s.database = pg_catalog.current_database() THEN @extschema@._standby_lag() END
               AS replication_lag
    FROM @extschema@.status() s;

COMMENT ON VIEW workers IS 'The alive workers: state, counters, last error, tick times';
COMMENT ON COLUMN workers.replication_lag IS
    'On a standby, alive_worker.lag() measured from this database''s heartbeats; NULL elsewhere';

REVOKE ALL ON FUNCTION status() FROM PUBLIC;
REVOKE ALL ON workers FROM PUBLIC;
GRANT EXECUTE ON FUNCTION status() TO pg_monitor;
GRANT SELECT ON workers TO pg_monitor;
-- end of hooks (issue 12)
