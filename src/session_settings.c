/*-------------------------------------------------------------------------
 *
 * session_settings.c
 *		The worker's session takes default_transaction_read_only and
 *		synchronous_commit as a client's fresh session of its database does:
 *		no setting of its own role makes it luckier, or unluckier, than
 *		clients.
 *
 * A session takes its database's and role's settings (ALTER DATABASE / ROLE
 * ... SET, pg_db_role_setting) once, when it connects.  The worker's session
 * lives for days: without this, an ALTER DATABASE ... SET
 * default_transaction_read_only = on that stops every new client would leave
 * the heartbeat writing, and its RESET would leave the worker failing while
 * clients write again.  So at each tick the worker reads pg_db_role_setting
 * again (a scan of a catalog of a few rows, in the tick's transaction) and
 * resolves the two settings as PostgreSQL does for a new session of an
 * ordinary client, a role without settings of its own: the database's
 * setting, else ALTER ROLE ALL's, else the server's (postgresql.conf, ALTER
 * SYSTEM).  The worker role's own settings of the two are not taken.
 *
 * The server's value is the postmaster's: what the worker inherited from it
 * before it connected, and after a reload what the postmaster then holds.  A
 * value given on the server's command line (-c, pg_ctl -o) outranks the
 * files and no reload changes it; otherwise the files' last assignment
 * counts, but one that PostgreSQL refuses (= 2) leaves the value as it was,
 * and none at all is PostgreSQL's default.  The worker's own GUC cannot say
 * it after it connected: the database's and role's settings are its reset
 * value from then on.  The worker holds both settings at PGC_S_OVERRIDE, so
 * that the values it resolved are the ones in force.
 *
 * synchronous_commit is resolved the same way, and taken as resolved: the
 * worker's role is not a client, so ALTER ROLE alive SET synchronous_commit
 * = local does not let the heartbeat commit while clients' commits wait for
 * a synchronous standby; a database's (or every role's) local applies to
 * every client, whose commits then do not wait, and neither does the
 * heartbeat's (the lead's decision on the red team's F4: the stronger of
 * that and the server's said CRITICAL while clients wrote).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_db_role_setting.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "session_settings.h"

/* ParseConfigFile's depth for a top-level file, as guc.c's own calls */
#define TOP_LEVEL_CONFIG_DEPTH 0

/* synchronous_commit's levels, weakest first */
static const char *const sync_commit_levels[] = {
	"off", "local", "remote_write", "on", "remote_apply"
};
#define SYNC_COMMIT_LEVELS lengthof(sync_commit_levels)
#define SYNC_COMMIT_DEFAULT 3	/* "on", PostgreSQL's default */

/* The server's values, before any database or role setting */
static bool server_read_only = false;
static int	server_sync_commit = SYNC_COMMIT_DEFAULT;

/* Given on the server's command line: no reload changes them. */
static bool read_only_from_command_line = false;
static bool sync_commit_from_command_line = false;

/* The level of a synchronous_commit value, or -1 if it is none. */
static int
sync_commit_level(const char *value)
{
	bool		boolean;

	for (int i = 0; i < SYNC_COMMIT_LEVELS; i++)
		if (pg_strcasecmp(value, sync_commit_levels[i]) == 0)
			return i;
	/* "true", "yes", "1", ... are accepted for on, as by the GUC itself */
	if (parse_bool(value, &boolean))
		return boolean ? 3 : 0;
	return -1;
}

/*
 * Whether the setting's value comes from the server's command line (or a
 * stronger source), read before the worker connects, while its GUCs are
 * still the postmaster's.
 */
static bool
from_command_line(const char *name)
{
	struct config_generic *option = NULL;

#if PG_VERSION_NUM >= 160000
	option = find_option(name, false, true, DEBUG1);
#else
	struct config_generic **options = get_guc_variables();
	int			count = GetNumConfigOptions();

	for (int i = 0; i < count && option == NULL; i++)
		if (pg_strcasecmp(options[i]->name, name) == 0)
			option = options[i];
#endif
	return option != NULL && option->source >= PGC_S_ARGV;
}

void
session_settings_capture_server_level(void)
{
	int			level = sync_commit_level(GetConfigOption("synchronous_commit", false, false));

	server_read_only = DefaultXactReadOnly;
	if (level >= 0)
		server_sync_commit = level;
	read_only_from_command_line = from_command_line("default_transaction_read_only");
	sync_commit_from_command_line = from_command_line("synchronous_commit");
}

void
session_settings_reread_server_level(void)
{
	MemoryContext parse_context = AllocSetContextCreate(CurrentMemoryContext,
														"alive_worker configuration files",
														ALLOCSET_SMALL_SIZES);
	MemoryContext previous = MemoryContextSwitchTo(parse_context);
	ConfigVariable *head = NULL;
	ConfigVariable *tail = NULL;

	/* The files a reload reads, in its order: the last assignment wins. */
	if (ParseConfigFile(ConfigFileName, true, NULL, 0, TOP_LEVEL_CONFIG_DEPTH, DEBUG1, &head, &tail) &&
		ParseConfigFile(PG_AUTOCONF_FILENAME, false, NULL, 0, TOP_LEVEL_CONFIG_DEPTH, DEBUG1, &head, &tail))
	{
		ConfigVariable *read_only_item = NULL;
		ConfigVariable *sync_commit_item = NULL;
		bool		boolean;
		int			level;

		for (ConfigVariable *item = head; item != NULL; item = item->next)
		{
			if (item->name == NULL)
				continue;
			if (pg_strcasecmp(item->name, "default_transaction_read_only") == 0)
				read_only_item = item;
			else if (pg_strcasecmp(item->name, "synchronous_commit") == 0)
				sync_commit_item = item;
		}

		/*
		 * As the postmaster's reload: no assignment is the default, a refused
		 * one leaves the value as it was, a command line's value stays.
		 */
		if (!read_only_from_command_line)
		{
			if (read_only_item == NULL)
				server_read_only = false;	/* PostgreSQL's default */
			else if (read_only_item->value != NULL && read_only_item->errmsg == NULL &&
					 parse_bool(read_only_item->value, &boolean))
				server_read_only = boolean;
		}
		if (!sync_commit_from_command_line)
		{
			if (sync_commit_item == NULL)
				server_sync_commit = SYNC_COMMIT_DEFAULT;
			else if (sync_commit_item->value != NULL && sync_commit_item->errmsg == NULL &&
					 (level = sync_commit_level(sync_commit_item->value)) >= 0)
				server_sync_commit = level;
		}
	}
	/* A file that cannot be read now: the reload itself says why; keep the last values. */
	MemoryContextSwitchTo(previous);
	MemoryContextDelete(parse_context);
}

/*
 * Which of pg_db_role_setting's rows a client's new session takes, strongest
 * first: the database's (ALTER DATABASE, ALTER ROLE ALL IN DATABASE), then
 * every role's (ALTER ROLE ALL).  The worker's own role's rows are not
 * taken: ALTER ROLE alive SET default_transaction_read_only = off on a
 * fenced server would let the heartbeat write while no client can.
 */
static int
precedence(Oid database, Oid role)
{
	if (role != InvalidOid)
		return -1;
	if (database == MyDatabaseId)
		return 0;
	if (database == InvalidOid)
		return 1;
	return -1;
}

void
session_settings_apply(void)
{
	Relation	relation;
	SysScanDesc scan;
	HeapTuple	tuple;
	int			read_only_from = INT_MAX;
	int			sync_commit_from = INT_MAX;
	bool		read_only = server_read_only;
	int			sync_commit = server_sync_commit;

	relation = table_open(DbRoleSettingRelationId, AccessShareLock);
	scan = systable_beginscan(relation, InvalidOid, false, NULL, 0, NULL);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Form_pg_db_role_setting row = (Form_pg_db_role_setting) GETSTRUCT(tuple);
		int			rank = precedence(row->setdatabase, row->setrole);
		Datum		config;
		bool		isnull;
		Datum	   *values;
		int			count;

		if (rank < 0)
			continue;
		config = heap_getattr(tuple, Anum_pg_db_role_setting_setconfig,
							  RelationGetDescr(relation), &isnull);
		if (isnull)
			continue;
		deconstruct_array(DatumGetArrayTypeP(config), TEXTOID, -1, false, TYPALIGN_INT,
						  &values, NULL, &count);
		for (int i = 0; i < count; i++)
		{
			char	   *name;
			char	   *value;
			bool		boolean;
			int			level;

			ParseLongOption(TextDatumGetCString(values[i]), &name, &value);
			if (value == NULL)
				continue;
			if (rank < read_only_from && pg_strcasecmp(name, "default_transaction_read_only") == 0 &&
				parse_bool(value, &boolean))
			{
				read_only = boolean;
				read_only_from = rank;
			}
			else if (rank < sync_commit_from && pg_strcasecmp(name, "synchronous_commit") == 0 &&
					 (level = sync_commit_level(value)) >= 0)
			{
				sync_commit = level;
				sync_commit_from = rank;
			}
		}
	}
	systable_endscan(scan);
	table_close(relation, AccessShareLock);

	if (DefaultXactReadOnly != read_only)
		SetConfigOption("default_transaction_read_only", read_only ? "on" : "off",
						PGC_SUSET, PGC_S_OVERRIDE);
	if (sync_commit_level(GetConfigOption("synchronous_commit", false, false)) != sync_commit)
		SetConfigOption("synchronous_commit", sync_commit_levels[sync_commit],
						PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * This tick's transaction began with the last tick's default: it takes
	 * the new one, before its first snapshot, as a new client's would.
	 */
	XactReadOnly = read_only;
}
