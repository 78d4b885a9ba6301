-- alive_worker 1.1 -> 1.2: trust (SECURITY.md) and what the status view adds.
-- A fresh CREATE EXTENSION runs 1.0, 1.1 and then this script, so that
-- installed and updated databases have the same objects.  Complain if this
-- script is run directly, not by CREATE or ALTER EXTENSION.
\echo Use "ALTER EXTENSION alive_worker UPDATE TO '1.2'" to load this file. \quit

-- ---- security (issue 11): no function runs with the extension owner's rights

-- The configured heartbeat table's newest timestamps, read as the table's
-- owner in a security-restricted operation (sql_functions.c): whatever code
-- the table holds runs with its owner's rights, never the caller's or the
-- extension owner's.  Views and other relations are refused.
CREATE FUNCTION _configured_heartbeats(OUT source_table text, OUT recent timestamptz[])
RETURNS record
AS 'MODULE_PATHNAME', 'alive_worker_configured_heartbeats'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION _configured_heartbeats() IS
    'For alive_worker.lag(): the configured heartbeat table''s newest timestamps, read as the table''s owner';

-- status (issue 13): lag() immune to the standby's clock skew.  The primary's
-- clock is heard in replication itself: every message the WAL sender sends
-- carries its send time, which the WAL receiver keeps beside the time it got
-- the message (pg_stat_wal_receiver).  Their difference is the standby's
-- clock offset plus the message's transit, which on a streaming standby is
-- well under a millisecond to a few: a better clock than NTP's between two
-- servers, and it needs no second clock read on the standby alone.
CREATE FUNCTION clock_skew() RETURNS interval
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT r.last_msg_receipt_time - r.last_msg_send_time
    FROM pg_catalog.pg_stat_wal_receiver r
    WHERE r.last_msg_receipt_time IS NOT NULL AND r.last_msg_send_time IS NOT NULL
$function$;

COMMENT ON FUNCTION clock_skew() IS
    'How far this standby''s clock is ahead of its primary''s (negative: behind), from the WAL receiver''s send and receipt times; NULL without a WAL receiver';

REVOKE ALL ON FUNCTION clock_skew() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION clock_skew() TO pg_monitor;

-- How far behind the primary this server is, pt-heartbeat's way (see 1.1 for
-- the measurement).  1.1 ran as the extension's owner (SECURITY DEFINER) and
-- read any table a caller named, or whatever relation had the configured
-- name, with the owner's rights: a pg_monitor member's view, or a database
-- owner's view put in the table's place, then ran their code as a superuser.
-- Now it runs with the caller's rights: a table the caller names is read as
-- the caller; the configured table is read through _configured_heartbeats(),
-- as its owner, so that monitoring roles still need no SELECT on it.
--
-- status (issue 13): and it measures by the primary's clock, not this
-- server's: the heartbeat's age is this server's clock less clock_skew()
-- (below), which is reported.  The new OUT column changes the result type, so
-- the function is dropped and made again, with its comment and grants;
-- _standby_lag() calls it by name.
DROP FUNCTION lag(regclass);

CREATE FUNCTION lag(
    heartbeat_table regclass DEFAULT NULL,
    OUT in_recovery boolean,
    OUT lag interval,
    OUT last_heartbeat_at timestamptz,
    OUT heartbeat_age interval,
    OUT tick_interval interval,
    OUT replay_paused boolean,
    OUT system_identifier bigint,
    OUT upstream text,
    OUT receiver_status text,
    OUT source_table text,
    OUT measured_at timestamptz,
    OUT clock_skew interval)
RETURNS record
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    ts_type regtype;
    newest_first text;
    recent timestamptz[];
BEGIN
    in_recovery := pg_is_in_recovery();
    -- A physical standby is a copy of its primary: the same identifier.
    system_identifier := (pg_control_system()).system_identifier;
    IF in_recovery THEN
        replay_paused := pg_get_wal_replay_pause_state() <> 'not paused';
        SELECT r.status, r.sender_host || ':' || r.sender_port
            INTO receiver_status, upstream
            FROM pg_stat_wal_receiver r;
        -- This server's clock against the primary's, which replication carries.
        clock_skew := @extschema@.clock_skew();
    END IF;

    IF heartbeat_table IS NULL THEN
        measured_at := clock_timestamp();
        SELECT h.source_table, h.recent INTO source_table, recent
            FROM @extschema@._configured_heartbeats() h;
    ELSE
        -- The caller's own table, read with the caller's rights.
        IF NOT has_table_privilege(heartbeat_table, 'SELECT') THEN
            RAISE EXCEPTION 'permission denied for table %', heartbeat_table
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        source_table := heartbeat_table::text;
        SELECT a.atttypid INTO ts_type
            FROM pg_attribute a
            WHERE a.attrelid = heartbeat_table AND a.attname = 'ts' AND a.attnum > 0 AND NOT a.attisdropped;
        IF ts_type IS NULL OR ts_type NOT IN ('timestamp'::regtype, 'timestamptz'::regtype) THEN
            RAISE EXCEPTION 'heartbeat table % has no column "ts" of a timestamp type', heartbeat_table
                USING ERRCODE = 'undefined_column',
                      DETAIL = 'The lag is measured from the time each heartbeat was written, in column ts.';
        END IF;
        -- The newest heartbeats are the highest pk (one writer, a serial key).
        newest_first := CASE WHEN EXISTS (
            SELECT FROM pg_attribute a
            WHERE a.attrelid = heartbeat_table AND a.attname = 'pk' AND a.attnum > 0 AND NOT a.attisdropped)
            THEN 'pk' ELSE 'ts' END;
        measured_at := clock_timestamp();
        EXECUTE format('SELECT array(SELECT %s FROM %s WHERE ts IS NOT NULL ORDER BY %I DESC LIMIT 9)',
                       CASE WHEN ts_type = 'timestamp'::regtype THEN 'ts AT TIME ZONE ''UTC''' ELSE 'ts' END,
                       heartbeat_table, newest_first)
            INTO recent;
    END IF;

    IF cardinality(recent) >= 2 THEN
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY recent[i] - recent[i + 1])
            INTO tick_interval
            FROM generate_subscripts(recent, 1) i
            WHERE i < cardinality(recent);
    ELSE
        tick_interval := coalesce(nullif(current_setting('alive_worker.interval', true), ''), '10s')::interval;
    END IF;
    IF cardinality(recent) >= 1 THEN
        last_heartbeat_at := recent[1];
        -- By the primary's clock: a standby's clock off by seconds changes nothing.
        heartbeat_age := measured_at - coalesce(clock_skew, interval '0') - last_heartbeat_at;
        -- A primary's own table is as fresh as it gets: no lag to measure.
        IF in_recovery OR heartbeat_table IS NOT NULL THEN
            lag := greatest(interval '0', heartbeat_age - tick_interval);
        END IF;
    END IF;
END
$function$;

COMMENT ON FUNCTION lag(regclass) IS
    'Replication lag of this standby (or of a subscriber''s heartbeat table), from the newest heartbeat and the primary''s interval, by the primary''s clock';

REVOKE ALL ON FUNCTION lag(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lag(regclass) TO pg_monitor;

-- NULL where there is nothing to measure: no table, or a relation that is
-- not one (lag() refuses it).
CREATE OR REPLACE FUNCTION _standby_lag() RETURNS interval
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    IF NOT pg_is_in_recovery() THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT l.lag FROM @extschema@.lag() l);
EXCEPTION
    WHEN undefined_table OR undefined_column OR wrong_object_type THEN
        RETURN NULL;
END
$function$;

REVOKE ALL ON FUNCTION _configured_heartbeats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _configured_heartbeats() TO pg_monitor;

-- status (issue 13): every state with its cause, and the commit's wait.
-- status() gains columns at the end; the view is recreated as 1.1 has it,
-- with its grants and comments.
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
    OUT state_detail text,
    OUT state_since timestamptz,
    OUT next_retry_at timestamptz,
    OUT connect_failures integer,
    OUT blocked_by integer[],
    OUT last_commit_ms double precision,
    OUT retention_error text)
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
-- end of status (issue 13)
