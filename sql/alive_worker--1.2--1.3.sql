-- alive_worker 1.2 -> 1.3: trust, round two (issue 19; docs/SECURITY.md).
-- A fresh CREATE EXTENSION runs 1.0, 1.1, 1.2 and then this script, in one
-- transaction: an error here undoes the whole installation.  Complain if
-- this script is run directly, not by CREATE or ALTER EXTENSION.
\echo Use "ALTER EXTENSION alive_worker UPDATE TO '1.3'" to load this file. \quit

-- ---- the extension's schema is a superuser's, and only superusers add to it

-- The control file names the schema alive_worker.  CREATE EXTENSION makes it
-- when it is missing, but installs into one that already exists, whoever
-- made it: a database owner's schema alive_worker, made beforehand, would
-- hold our functions beside theirs (an overload of lag(text) that a
-- superuser's lag('public.log_table') would call), or let them rename ours
-- and put look-alikes in its place.  So the installation, and every update,
-- refuses a schema that a role below superuser owns, may create objects in,
-- or already has objects in.  A fresh installation runs this script last,
-- in the same transaction as 1.0's: refused here, nothing of it remains (and
-- none of 1.0 to 1.2's statements runs code from the schema: they create,
-- drop, comment and grant only).
DO $trusted_schema$
DECLARE
    owner_name name;
    owner_is_superuser boolean;
    creators text;
    foreign_objects text;
BEGIN
    SELECT r.rolname, r.rolsuper INTO owner_name, owner_is_superuser
        FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
        WHERE n.oid = '@extschema@'::pg_catalog.regnamespace;
    IF NOT owner_is_superuser THEN
        RAISE EXCEPTION 'schema @extschema@ belongs to role %, which is not a superuser', owner_name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'alive_worker''s functions run for superusers and monitoring roles: '
                           'their schema must be one that only superusers can change.',
                  HINT = pg_catalog.format('Check what the schema holds, then DROP SCHEMA %I CASCADE; '
                                           '(CREATE EXTENSION makes it anew), or ALTER SCHEMA %I OWNER TO '
                                           'a superuser.', '@extschema@', '@extschema@');
    END IF;
    SELECT pg_catalog.string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                      ELSE pg_catalog.quote_ident(r.rolname) END, ', ')
        INTO creators
        FROM pg_catalog.pg_namespace n,
             LATERAL pg_catalog.aclexplode(n.nspacl) a
             LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
        WHERE n.oid = '@extschema@'::pg_catalog.regnamespace
          AND a.privilege_type = 'CREATE' AND NOT coalesce(r.rolsuper, false);
    IF creators IS NOT NULL THEN
        RAISE EXCEPTION 'roles below superuser may create objects in schema @extschema@: %', creators
            USING ERRCODE = 'insufficient_privilege',
                  HINT = pg_catalog.format('REVOKE CREATE ON SCHEMA %I FROM %s;', '@extschema@', creators);
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('%s (owner %I)', o.what, r.rolname), ', ')
        INTO foreign_objects
        FROM (SELECT pg_catalog.format('relation %I', c.relname) AS what, c.relowner AS owner
                  FROM pg_catalog.pg_class c WHERE c.relnamespace = '@extschema@'::pg_catalog.regnamespace
              UNION ALL
              SELECT pg_catalog.format('function %I', p.proname), p.proowner
                  FROM pg_catalog.pg_proc p WHERE p.pronamespace = '@extschema@'::pg_catalog.regnamespace
              UNION ALL
              SELECT pg_catalog.format('type %I', t.typname), t.typowner
                  FROM pg_catalog.pg_type t WHERE t.typnamespace = '@extschema@'::pg_catalog.regnamespace
              UNION ALL
              SELECT pg_catalog.format('operator %s', o.oprname), o.oprowner
                  FROM pg_catalog.pg_operator o WHERE o.oprnamespace = '@extschema@'::pg_catalog.regnamespace
             ) o JOIN pg_catalog.pg_roles r ON r.oid = o.owner
        WHERE NOT r.rolsuper;
    IF foreign_objects IS NOT NULL THEN
        RAISE EXCEPTION 'schema @extschema@ holds objects of roles below superuser: %', foreign_objects
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Drop them, or the schema, after checking what they are.';
    END IF;
END
$trusted_schema$;

-- ---- one reader of heartbeat tables (issue 19)

-- Every read of a heartbeat table that alive_worker makes for someone (lag(),
-- lag(table), alive-worker tail) goes through this C function: it accepts
-- only an ordinary or partitioned table, reads it as the table's owner in a
-- security-restricted operation (a view's query, a partial index's
-- predicate or a policy of the owner's runs with the owner's rights, never
-- the caller's), and only its columns of pg_catalog's types.  The configured
-- table may be read by anyone granted EXECUTE (pg_monitor); any other table
-- only by a caller who holds SELECT on it.  Rows come oldest first: the
-- newest max_rows, or the first max_rows after after_pk (or after_ts, for a
-- table without an integer pk).
CREATE FUNCTION heartbeats(
    heartbeat_table regclass DEFAULT NULL,
    max_rows integer DEFAULT 10,
    after_pk bigint DEFAULT NULL,
    after_ts timestamptz DEFAULT NULL,
    OUT pk bigint,
    OUT ts timestamptz,
    OUT message text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'alive_worker_heartbeats'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

COMMENT ON FUNCTION heartbeats(regclass, integer, bigint, timestamptz) IS
    'Heartbeats of a table (default: the configured one), oldest first, read as the table''s owner';

REVOKE ALL ON FUNCTION heartbeats(regclass, integer, bigint, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION heartbeats(regclass, integer, bigint, timestamptz) TO pg_monitor;

-- lag() reads through heartbeats() now, a table the caller names too (1.2
-- read that as the caller, who so ran the code of whoever owned it).  And a
-- heartbeat dated in the future beyond the measured clock skew is not
-- evidence: anyone with INSERT on the table could date one in 2100 and make
-- the lag 0 s for ever, or 'infinity' and make lag() fail.  Such rows are
-- left out of the measurement and reported in future_heartbeat_at.  The new
-- OUT column changes the result type: dropped and made again, with its
-- comment and grants; _standby_lag() calls it by name.
DROP FUNCTION lag(regclass);
DROP FUNCTION _configured_heartbeats();

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
    OUT clock_skew interval,
    OUT future_heartbeat_at timestamptz)
RETURNS record
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    recent timestamptz[];
    -- Later than this, by the primary's clock, is no heartbeat yet written.
    latest_possible timestamptz;
    -- The interval of this server's configuration.  The rows' own gaps
    -- teach the writer's interval (a publisher's may differ from this
    -- server's), but count at most ten of this one: rows a day apart from
    -- whoever may insert would otherwise make a day's lag look like none.
    configured_interval interval := coalesce(
        nullif(pg_catalog.current_setting('alive_worker.interval', true), ''), '10s')::interval;
BEGIN
    in_recovery := pg_catalog.pg_is_in_recovery();
    -- A physical standby is a copy of its primary: the same identifier.
    system_identifier := (pg_catalog.pg_control_system()).system_identifier;
    IF in_recovery THEN
        replay_paused := pg_catalog.pg_get_wal_replay_pause_state() OPERATOR(pg_catalog.<>) 'not paused';
        SELECT r.status, r.sender_host OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) r.sender_port
            INTO receiver_status, upstream
            FROM pg_catalog.pg_stat_wal_receiver r;
        -- This server's clock against the primary's, which replication carries.
        clock_skew := @extschema@.clock_skew();
    END IF;

    IF heartbeat_table IS NULL THEN
        source_table := pg_catalog.format('%I.%I',
            coalesce(nullif(pg_catalog.current_setting('alive_worker.schema', true), ''), 'public'),
            coalesce(nullif(pg_catalog.current_setting('alive_worker.table', true), ''), 'log_table'));
    ELSE
        source_table := heartbeat_table::text;
    END IF;
    measured_at := pg_catalog.clock_timestamp();
    latest_possible := measured_at OPERATOR(pg_catalog.-) coalesce(clock_skew, interval '0')
                       OPERATOR(pg_catalog.+) interval '1 second';
    -- The newest heartbeats by pk, newest first; those dated after
    -- latest_possible (or at infinity) are not evidence.
    SELECT pg_catalog.array_agg(h.ts ORDER BY h.ts DESC)
               FILTER (WHERE pg_catalog.isfinite(h.ts) AND h.ts OPERATOR(pg_catalog.<=) latest_possible),
           pg_catalog.max(h.ts)
               FILTER (WHERE NOT pg_catalog.isfinite(h.ts) OR h.ts OPERATOR(pg_catalog.>) latest_possible)
        INTO recent, future_heartbeat_at
        FROM @extschema@.heartbeats(heartbeat_table, 9) h;

    IF pg_catalog.cardinality(recent) OPERATOR(pg_catalog.>=) 2 THEN
        SELECT pg_catalog.percentile_cont(0.5) WITHIN GROUP
                   (ORDER BY recent[i] OPERATOR(pg_catalog.-) recent[i OPERATOR(pg_catalog.+) 1])
            INTO tick_interval
            FROM pg_catalog.generate_subscripts(recent, 1) i
            WHERE i OPERATOR(pg_catalog.<) pg_catalog.cardinality(recent);
        tick_interval := least(tick_interval, 10 OPERATOR(pg_catalog.*) configured_interval);
    ELSE
        tick_interval := configured_interval;
    END IF;
    IF pg_catalog.cardinality(recent) OPERATOR(pg_catalog.>=) 1 THEN
        last_heartbeat_at := recent[1];
        -- By the primary's clock: a standby's clock off by seconds changes nothing.
        heartbeat_age := measured_at OPERATOR(pg_catalog.-) coalesce(clock_skew, interval '0')
                         OPERATOR(pg_catalog.-) last_heartbeat_at;
        -- A primary's own table is as fresh as it gets: no lag to measure.
        IF in_recovery OR heartbeat_table IS NOT NULL THEN
            lag := greatest(interval '0', heartbeat_age OPERATOR(pg_catalog.-) tick_interval);
        END IF;
    END IF;
END
$function$;

COMMENT ON FUNCTION lag(regclass) IS
    'Replication lag of this standby (or of a subscriber''s heartbeat table), from the newest heartbeat and the primary''s interval, by the primary''s clock; heartbeats dated in the future are left out and reported';

REVOKE ALL ON FUNCTION lag(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lag(regclass) TO pg_monitor;

-- ---- status: a worker ended by anything but stop() or shutdown (issue 19)

-- status() gains columns at the end (a function's result type cannot change
-- in place): drop the view and the function, then create both again as 1.2
-- made them, with the same comments and grants.
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
    OUT retention_error text,
    OUT hook_failures bigint,
    OUT last_hook_error text,
    OUT last_hook_error_at timestamptz,
    OUT hook_ms_p50 double precision,
    OUT hook_ms_p99 double precision,
    -- trust (issue 19)
    OUT terminations bigint,
    OUT last_terminated_at timestamptz,
    OUT last_terminated_by integer,
    -- clients (issue 21): the client-path probe
    OUT probe_role text,
    OUT probes_ok bigint,
    OUT probes_failed bigint,
    OUT last_probe_at timestamptz,
    OUT last_probe_ok_at timestamptz,
    OUT last_probe_ms double precision,
    OUT probe_error_sqlstate text,
    OUT probe_error_message text,
    -- the fullest file system of the data directory, pg_wal and the tablespaces
    OUT disk_free_bytes bigint,
    OUT disk_size_bytes bigint,
    OUT disk_free_where text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'alive_worker_status'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION status() IS
    'One row per configured alive worker, running or not, read from shared memory';

CREATE VIEW workers AS
    SELECT s.*,
           CASE WHEN s.database OPERATOR(pg_catalog.=) pg_catalog.current_database()
                THEN @extschema@._standby_lag() END AS replication_lag
    FROM @extschema@.status() s;

COMMENT ON VIEW workers IS 'The alive workers: state, counters, last error, tick times';
COMMENT ON COLUMN workers.replication_lag IS
    'On a standby, alive_worker.lag() measured from this database''s heartbeats; NULL elsewhere';

REVOKE ALL ON FUNCTION status() FROM PUBLIC;
REVOKE ALL ON workers FROM PUBLIC;
GRANT EXECUTE ON FUNCTION status() TO pg_monitor;
GRANT SELECT ON workers TO pg_monitor;

-- ---- the availability ledger (issue 23): what explains a gap in the heartbeats

-- Written by the worker in the transaction of the heartbeat that ends a gap
-- (a heartbeat cannot be written while there is none), so an event commits
-- exactly when the window it explains closes, and is replicated with it.
-- Kept longer than the heartbeats (the worker deletes events older than
-- alive_worker.retention or 400 days, whichever is longer), so that a year's
-- ledger outlives a week's retention: outage_from and at are the window.
-- A superuser's table, which the worker writes and prunes as its owner (no
-- grant to the worker's role: a trigger granted on the heartbeat table, or a
-- hook, runs as that role and must not reach the ledger), and which
-- alive-worker report reads.
CREATE TABLE events (
    pk pg_catalog.int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
    kind pg_catalog.text NOT NULL,
    cause pg_catalog.text NOT NULL,
    outage_from pg_catalog.timestamptz,
    heartbeat_table pg_catalog.text NOT NULL,
    pid pg_catalog.int4 NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
    timeline pg_catalog.int4,
    sqlstate pg_catalog.text,
    detail pg_catalog.text NOT NULL DEFAULT '',
    CONSTRAINT events_kind CHECK (kind OPERATOR(pg_catalog.=) ANY
        (ARRAY['started', 'stopped', 'stopping', 'promoted', 'resumed', 'refused',
               'admitted']::pg_catalog.text[]))
);
CREATE INDEX events_at ON events (at);

COMMENT ON TABLE events IS
    'The availability ledger: starts, stops, promotions and resumed heartbeats, each with what explains the gap before it; the last heartbeat before a shutdown; the client-path probe refused and admitted again';
COMMENT ON COLUMN events.outage_from IS
    'The last heartbeat before the gap this event ends (at is the first after it); NULL: no gap';

-- pg_dump keeps the ledger's rows with the database.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.events', '');

REVOKE ALL ON events FROM PUBLIC;
GRANT SELECT ON events TO pg_monitor;

