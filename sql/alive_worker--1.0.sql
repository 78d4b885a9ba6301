-- alive_worker 1.0: status, start and stop of the heartbeat workers.
-- The workers themselves run without this extension; it only gives SQL a view
-- of them.  Complain if this script is run directly, not by CREATE EXTENSION.
\echo Use "CREATE EXTENSION alive_worker" to load this file. \quit

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
    OUT tick_ms_p99 double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'alive_worker_status'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION status() IS
    'One row per configured alive worker, running or not, read from shared memory';

CREATE VIEW workers AS SELECT * FROM status();

COMMENT ON VIEW workers IS 'The alive workers: state, counters, last error, tick times';

CREATE FUNCTION start(database text) RETURNS boolean
AS 'MODULE_PATHNAME', 'alive_worker_start'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION start(text) IS
    'Starts the stopped alive worker of a configured database; false if it was not stopped';

CREATE FUNCTION stop(database text) RETURNS boolean
AS 'MODULE_PATHNAME', 'alive_worker_stop'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION stop(text) IS
    'Stops the alive worker of a configured database cleanly (SIGTERM); it stays stopped until start() or a server restart';

-- Reading is for monitoring roles; starting and stopping for superusers, or
-- roles a superuser grants it to.
REVOKE ALL ON FUNCTION status(), start(text), stop(text) FROM PUBLIC;
REVOKE ALL ON workers FROM PUBLIC;
GRANT EXECUTE ON FUNCTION status() TO pg_monitor;
GRANT SELECT ON workers TO pg_monitor;
GRANT USAGE ON SCHEMA @extschema@ TO pg_monitor;
