"""Built-in functions whose call changes what a statement is: what they risk, what kind.

Names are matched without their schema when the schema is ``pg_catalog`` or
absent (built-ins resolve through ``pg_catalog`` first whatever the
``search_path``), and with it for extensions that may live anywhere.
"""

from __future__ import annotations

from dbward.sql.facts import Risk, StatementKind

_SERVER_FILES = {
    "pg_read_file",
    "pg_read_binary_file",
    "pg_stat_file",
    "pg_ls_dir",
    "pg_ls_logdir",
    "pg_ls_waldir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "pg_ls_logicalsnapdir",
    "pg_ls_logicalmapdir",
    "pg_ls_replslotdir",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "pg_file_sync",
    "pg_logdir_ls",
}

_LARGE_OBJECTS_FILES = {"lo_import", "lo_export"}
_LARGE_OBJECTS_WRITE = {
    "lo_create",
    "lo_creat",
    "lo_unlink",
    "lo_put",
    "lo_from_bytea",
    "lowrite",
    "lo_truncate",
    "lo_truncate64",
}
_LARGE_OBJECTS_READ = {"lo_get", "lo_open", "loread", "lo_lseek", "lo_tell", "lo_close"}

# Functions that run SQL handed to them as text: dbward cannot see what they do.
_DYNAMIC_SQL = {
    "dblink",
    "dblink_exec",
    "dblink_open",
    "dblink_send_query",
    "dblink_connect",
    "dblink_connect_u",
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "ts_stat",
    "crosstab",
    "crosstab2",
    "crosstab3",
    "crosstab4",
    "connectby",
}

_EXPORTS = {
    "table_to_xml",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xml_and_xmlschema",
    "cursor_to_xml",
}

_ADMIN = {
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_promote",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters",
    "pg_log_backend_memory_contexts",
}

_WRITES = {"nextval", "setval"} | _LARGE_OBJECTS_WRITE

_RISKS: dict[str, frozenset[Risk]] = {}
for _name in _SERVER_FILES:
    _RISKS[_name] = frozenset({Risk.SERVER_FILE_ACCESS})
for _name in _LARGE_OBJECTS_FILES:
    _RISKS[_name] = frozenset({Risk.SERVER_FILE_ACCESS, Risk.LARGE_OBJECT})
for _name in _LARGE_OBJECTS_WRITE | _LARGE_OBJECTS_READ:
    _RISKS[_name] = frozenset({Risk.LARGE_OBJECT})
for _name in _DYNAMIC_SQL:
    _RISKS[_name] = frozenset({Risk.DYNAMIC_SQL})
for _name in _EXPORTS:
    _RISKS[_name] = frozenset({Risk.DATA_EXPORT})
for _name in _ADMIN:
    _RISKS[_name] = frozenset({Risk.ADMIN_FUNCTION})
# set_config can set role and session_authorization as well as any other setting.
_RISKS["set_config"] = frozenset({Risk.CONFIG_CHANGE, Risk.ROLE_CHANGE})

_KINDS: dict[str, StatementKind] = {name: StatementKind.WRITE for name in _WRITES}
_KINDS.update({name: StatementKind.WRITE for name in _LARGE_OBJECTS_FILES})
_KINDS.update({name: StatementKind.UNKNOWN for name in _DYNAMIC_SQL})
_KINDS.update({name: StatementKind.ADMIN for name in _ADMIN})
_KINDS["set_config"] = StatementKind.SESSION

_NO_RISK: frozenset[Risk] = frozenset()


def base_name(qualified: str) -> str:
    """``pg_catalog.pg_read_file`` -> ``pg_read_file``; other schemas are kept.

    An unqualified name or one in ``pg_catalog`` is the built-in; an extension's
    function (``dblink``) is known by its name in whatever schema it lives.
    """
    schema, _, name = qualified.rpartition(".")
    return name if schema in ("", "pg_catalog") or name in _DYNAMIC_SQL else qualified


def function_risks(qualified: str) -> frozenset[Risk]:
    return _RISKS.get(base_name(qualified), _NO_RISK)


def function_kind(qualified: str) -> StatementKind | None:
    """The kind a call makes its statement at least, or None for plain functions."""
    return _KINDS.get(base_name(qualified))
