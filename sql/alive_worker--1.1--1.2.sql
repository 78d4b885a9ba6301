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

-- How far behind the primary this server is, pt-heartbeat's way (see 1.1 for
-- the measurement).  1.1 ran as the extension's owner (SECURITY DEFINER) and
-- read any table a caller named, or whatever relation had the configured
-- name, with the owner's rights: a pg_monitor member's view, or a database
-- owner's view put in the table's place, then ran their code as a superuser.
-- Now it runs with the caller's rights: a table the caller names is read as
-- the caller; the configured table is read through _configured_heartbeats(),
-- as its owner, so that monitoring roles still need no SELECT on it.
CREATE OR REPLACE FUNCTION lag(
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
    OUT measured_at timestamptz)
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
        heartbeat_age := measured_at - last_heartbeat_at;
        -- A primary's own table is as fresh as it gets: no lag to measure.
        IF in_recovery OR heartbeat_table IS NOT NULL THEN
            lag := greatest(interval '0', heartbeat_age - tick_interval);
        END IF;
    END IF;
END
$function$;

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
