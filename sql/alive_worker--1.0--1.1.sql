-- alive_worker 1.0 -> 1.1: replication lag measured from the heartbeats.
-- A fresh CREATE EXTENSION runs 1.0 and then this script, so that installed
-- and updated databases have the same objects.  Complain if this script is
-- run directly, not by CREATE or ALTER EXTENSION.
\echo Use "ALTER EXTENSION alive_worker UPDATE TO '1.1'" to load this file. \quit

-- How far behind the primary this server is, pt-heartbeat's way.  The
-- primary's worker writes a heartbeat on a grid of deadlines one interval
-- apart, so on a standby the newest replayed heartbeat is expected to be up
-- to one interval old even with no lag at all: what counts is how long the
-- next one has been overdue, that is, the time since its expected tick.  That
-- is accurate to the time a tick takes to commit and replay (a few ms), where
-- the age of the newest heartbeat alone would be off by up to an interval.
--
-- The interval is the primary's, as the replayed rows show it (the median gap
-- between the newest ones), so that it needs no setting on the standby and
-- follows a change on the primary.  ts is written in UTC.  The clocks of
-- primary and standby must agree (NTP), as for pt-heartbeat.
--
-- SECURITY DEFINER so that monitoring roles need no SELECT on the heartbeat
-- table.  The table is the configured one (alive_worker.schema and .table)
-- unless named: then the caller must be allowed to read it, and it is read
-- on any server, for a logical subscriber that receives the heartbeats.
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
    OUT measured_at timestamptz)
RETURNS record
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    heartbeats regclass := heartbeat_table;
    schema_name text := coalesce(nullif(current_setting('alive_worker.schema', true), ''), 'public');
    table_name text := coalesce(nullif(current_setting('alive_worker.table', true), ''), 'log_table');
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

    IF heartbeats IS NULL THEN
        heartbeats := to_regclass(format('%I.%I', schema_name, table_name));
        IF heartbeats IS NULL THEN
            RAISE EXCEPTION 'heartbeat table %.% does not exist', quote_ident(schema_name), quote_ident(table_name)
                USING ERRCODE = 'undefined_table',
                      HINT = 'The alive worker creates it on the primary at its first tick; check alive_worker.workers there, and that alive_worker.schema and alive_worker.table are the same here.';
        END IF;
    ELSIF NOT has_table_privilege(session_user, heartbeats, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for table %', heartbeats
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    source_table := heartbeats::text;

    SELECT a.atttypid INTO ts_type
        FROM pg_attribute a
        WHERE a.attrelid = heartbeats AND a.attname = 'ts' AND a.attnum > 0 AND NOT a.attisdropped;
    IF ts_type IS NULL OR ts_type NOT IN ('timestamp'::regtype, 'timestamptz'::regtype) THEN
        RAISE EXCEPTION 'heartbeat table % has no column "ts" of a timestamp type', heartbeats
            USING ERRCODE = 'undefined_column',
                  DETAIL = 'The lag is measured from the time each heartbeat was written, in column ts.';
    END IF;
    -- The newest heartbeats are the highest pk (one writer, a serial key).
    newest_first := CASE WHEN EXISTS (
        SELECT FROM pg_attribute a
        WHERE a.attrelid = heartbeats AND a.attname = 'pk' AND a.attnum > 0 AND NOT a.attisdropped)
        THEN 'pk' ELSE 'ts' END;

    measured_at := clock_timestamp();
    EXECUTE format('SELECT array(SELECT %s FROM %s WHERE ts IS NOT NULL ORDER BY %I DESC LIMIT 9)',
                   CASE WHEN ts_type = 'timestamp'::regtype THEN 'ts AT TIME ZONE ''UTC''' ELSE 'ts' END,
                   heartbeats, newest_first)
        INTO recent;

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

COMMENT ON FUNCTION lag(regclass) IS
    'Replication lag of this standby (or of a subscriber''s heartbeat table), from the newest heartbeat and the primary''s interval';

-- The lag for the status view: NULL rather than an error where there is
-- nothing to measure, so that the view answers whatever the table's state.
CREATE FUNCTION _standby_lag() RETURNS interval
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    IF NOT pg_is_in_recovery() THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT l.lag FROM @extschema@.lag() l);
EXCEPTION
    WHEN undefined_table OR undefined_column THEN
        RETURN NULL;
END
$function$;

COMMENT ON FUNCTION _standby_lag() IS
    'alive_worker.lag() for the workers view: NULL on a primary or without a heartbeat table';

-- A column added at the end keeps the view's grants and its users' queries.
CREATE OR REPLACE VIEW workers AS
    SELECT s.*,
           CASE WHEN s.database = pg_catalog.current_database() THEN @extschema@._standby_lag() END
               AS replication_lag
    FROM @extschema@.status() s;

COMMENT ON COLUMN workers.replication_lag IS
    'On a standby, alive_worker.lag() measured from this database''s heartbeats; NULL elsewhere';

REVOKE ALL ON FUNCTION lag(regclass), _standby_lag() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lag(regclass), _standby_lag() TO pg_monitor;
