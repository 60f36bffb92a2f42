"""Whether a parsed query reads any table of the database at all.

A query that reads no table (`SELECT 275`, `VALUES ('Andrew')`, a `WITH` of literals, a
table function over a literal such as `json_each('[275]')`) returns the same rows on every
database, so against a gold that reads tables it is a hard-coded answer, not a query
(`rewards.sql.score_sql` rejects it unless a database where the gold's answer differs
proves it right). Deciding this on the syntax tree, not the text, matters: a `FROM` of a
CTE name reads nothing, and a table name inside a subquery or a CTE body does count.

Catalog relations (`sqlite_master`, `information_schema.*`, `pg_catalog.*`) are the same
on every variant of a database, so reading only them counts as reading no table.
"""

from __future__ import annotations

from sqlglot import exp

_CATALOG_TABLES = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"})
_CATALOG_SCHEMAS = frozenset({"information_schema", "pg_catalog"})


def reads_tables(tables: list[exp.Table], ctes: list[exp.CTE], dialect: str) -> bool:
    """True iff one of a statement's `tables` (its Table nodes, as the gate's walk met them)
    is a stored table, not one of its `ctes`, a table function or a catalog relation."""
    names = {cte.alias_or_name.lower() for cte in ctes}
    for table in tables:
        if not isinstance(table.this, (exp.Identifier, exp.Dot)):
            continue  # a table-valued function: its arguments are walked on their own
        name, schema = table.name.lower(), table.db.lower()
        if (not schema and name in names) or (name in _CATALOG_TABLES and schema in ("", "main", "temp")):
            continue
        if schema in _CATALOG_SCHEMAS or (dialect == "postgres" and not schema and name.startswith("pg_")):
            continue
        return True
    return False
