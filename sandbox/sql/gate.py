"""Static gate for candidate SQL, run on the trusted side before anything executes.

The candidate is parsed with sqlglot in the task's dialect and every node of the tree is
checked against an ALLOW-LIST of read-only query constructs. Anything not on the list,
including node types sqlglot adds in later versions and `Command` (sqlglot's fallback for
syntax it does not understand), is rejected: a keyword deny-list would miss whatever we
did not think of, an allow-list fails closed. On top of the list, functions and relations
that read files, sleep, touch server state or leak other sessions are denied by name,
because sqlglot parses unknown functions into a generic `Anonymous` node that the
allow-list has to admit for honest dialect functions to work.

Statements are split on the tokenizer's `;` tokens (not on text), so a `;` inside a
string, quoted identifier or comment never splits and one outside them always does; the
dialect tokenizers agree with the engines on the lexical corners that matter (nested
block comments in postgres/duckdb but not sqlite, E'' and $$ strings in postgres/duckdb,
no backslash escapes in standard strings).

Only a parse failure is an *error* (ok=False without a CRITICAL finding: a syntax error
is a wrong answer, not a cheat). Every rejection of parseable SQL is a CRITICAL finding.
The execution side should still run the statement with a single-statement API on a
read-only connection: this gate is the first wall, not the only one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.tokens import Token, TokenType

from rewards.model import Finding, Severity
from sandbox.sql.tables import reads_tables

DIALECTS = ("sqlite", "postgres", "duckdb")
MAX_SQL_CHARS = 100_000
_MAX_STATEMENTS = 8  # examined for the audit log; more than one is already a rejection
_MAX_FINDINGS = 32  # `SELECT pg_sleep(1), pg_sleep(1), ...` must not flood the log
_EVIDENCE = 200

# Read-only query structure and plain expressions. Subclasses count (isinstance), which is
# what admits all of sqlglot's Binary/Unary operators and Func functions.
_ALLOWED: tuple[type[exp.Expr], ...] = (
    # query structure
    exp.Select,
    exp.Union,
    exp.Intersect,
    exp.Except,
    exp.Subquery,
    exp.With,
    exp.CTE,
    exp.RecursiveWithSearch,
    exp.From,
    exp.Join,
    exp.Lateral,
    exp.Where,
    exp.Group,
    exp.Cube,
    exp.Rollup,
    exp.GroupingSets,
    exp.Having,
    exp.Qualify,
    exp.Order,
    exp.Ordered,
    exp.Limit,
    exp.LimitOptions,
    exp.Offset,
    exp.Fetch,
    exp.Distinct,
    exp.Window,
    exp.WindowSpec,
    exp.Table,
    exp.TableAlias,
    exp.ColumnDef,  # column definition list: `FROM json_to_record(j) AS x(a int)`
    exp.TableSample,
    exp.Values,
    exp.Tuple,
    exp.Pivot,
    exp.PivotAlias,
    # names and values
    exp.Star,
    exp.Column,
    exp.Identifier,
    exp.Alias,
    exp.Aliases,
    exp.Literal,
    exp.Boolean,
    exp.Null,
    exp.Var,
    exp.ByteString,
    exp.HexString,
    exp.BitString,
    exp.RawString,
    exp.UnicodeString,
    exp.National,
    exp.DataType,
    exp.DataTypeParam,
    exp.ObjectIdentifier,
    exp.PseudoType,
    exp.Interval,
    exp.IntervalSpan,
    # expression forms that are not Func/Binary/Unary
    exp.Between,
    exp.In,
    exp.Any,
    exp.All,
    exp.Bracket,
    exp.Slice,
    exp.Lambda,
    exp.Comprehension,
    exp.Filter,
    exp.WithinGroup,
    exp.IgnoreNulls,
    exp.RespectNulls,
    exp.AtTimeZone,
    exp.FromTimeZone,
    exp.JSONPath,
    exp.JSONPathKey,
    exp.JSONPathRoot,
    exp.JSONPathSubscript,
    exp.JSONPathSlice,
    exp.JSONPathWildcard,
    exp.JSONPathSelector,
    exp.JSONPathUnion,
    exp.JSONPathFilter,
    exp.JSONPathRecursive,
    exp.JSONPathScript,
    # read-only JSON constructors and readers that are not Func: json_object's key-value
    # pairs, JSON_VALUE/JSON_QUERY options, JSON_TABLE's COLUMNS, IS JSON, FORMAT JSON
    exp.JSONKeyValue,
    exp.JSONValue,
    exp.JSONSchema,
    exp.JSONColumnDef,
    exp.JSONExtractQuote,
    exp.JSON,
    exp.FormatJson,
    exp.OnCondition,
    # operator and function families (functions are further filtered by name below)
    exp.Binary,
    exp.Unary,
    exp.Func,
)

# Statements and clauses that write, change session/server state or leave the query
# language; used only to pick the finding code, since everything off the allow-list is
# rejected anyway.
_WRITES: tuple[type[exp.Expr], ...] = (
    exp.DML,
    exp.DDL,
    exp.Drop,
    exp.Alter,
    exp.TruncateTable,
    exp.Command,
    exp.Into,
    exp.Lock,
    exp.Returning,
    exp.Pragma,
    exp.Attach,
    exp.Detach,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Set,
    exp.SetItem,
    exp.Analyze,
    exp.Install,
    exp.Use,
    exp.Grant,
    exp.Revoke,
    exp.Execute,
    exp.LoadData,
    exp.Export,
)

_TOP_LEVEL: tuple[type[exp.Expr], ...] = (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)
# sqlglot parses statements it has no node for into bare expressions (`SAVEPOINT a` is a
# column `SAVEPOINT` aliased `a`, `CHECKPOINT` a column), and also parses prose that way
# (`garbage here`). Both are refused; the statement keyword decides whether that is an
# attack (CRITICAL) or merely not SQL (an error).
_BARE_EXPRESSIONS: tuple[type[exp.Expr], ...] = (exp.Condition, exp.Alias, exp.Identifier, exp.Star, exp.Tuple)
_STATEMENT_WORDS = frozenset(
    """ABORT ALTER ANALYSE ANALYZE ATTACH BEGIN CALL CHECKPOINT CLOSE CLUSTER COMMENT COMMIT COPY CREATE
    DEALLOCATE DECLARE DELETE DETACH DISCARD DO DROP END EXECUTE EXPLAIN EXPORT FETCH FORCE GRANT IMPORT
    INSERT INSTALL LISTEN LOAD LOCK MERGE MOVE NOTIFY PRAGMA PREPARE REASSIGN REFRESH REINDEX RELEASE
    REPLACE RESET REVOKE ROLLBACK SAVEPOINT SECURITY SET SHOW START TRUNCATE UNLISTEN UPDATE UPSERT USE
    VACUUM""".split()
)

# Known sqlglot function classes with no honest place in a read-only answer.
_DENIED_FUNC_CLASSES: tuple[type[exp.Expr], ...] = (exp.ReadCSV, exp.ReadParquet, exp.NextValueFor, exp.ToFile)

_FILE_READERS = frozenset(
    {
        # sqlite (fileio / zipfile / shell extensions)
        "load_extension",
        "readfile",
        "writefile",
        "edit",
        "fsdir",
        "lsdir",
        "zipfile",
        "fts3_tokenizer",
        "sqlite_offset",
        # postgres server files and large objects
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "pg_ls_logdir",
        "pg_ls_waldir",
        "pg_ls_tmpdir",
        "pg_ls_archive_statusdir",
        "pg_ls_logicalmapdir",
        "pg_ls_logicalsnapdir",
        "pg_ls_replslotdir",
        "pg_file_write",
        "pg_file_rename",
        "pg_file_unlink",
        "pg_file_sync",
        "pg_logdir_ls",
        "lo_import",
        "lo_export",
        "lo_open",
        "lo_creat",
        "lo_create",
        "lo_unlink",
        "lo_get",
        "lo_put",
        "lo_from_bytea",
        "lo_truncate",
        "loread",
        "lowrite",
        # duckdb file, network and foreign-database readers
        "read_csv",
        "read_csv_auto",
        "sniff_csv",
        "read_parquet",
        "parquet_scan",
        "parquet_metadata",
        "parquet_schema",
        "parquet_file_metadata",
        "parquet_kv_metadata",
        "read_json",
        "read_json_auto",
        "read_json_objects",
        "read_json_objects_auto",
        "read_ndjson",
        "read_ndjson_auto",
        "read_ndjson_objects",
        "read_text",
        "read_blob",
        "read_xlsx",
        "st_read",
        "iceberg_scan",
        "iceberg_metadata",
        "iceberg_snapshots",
        "delta_scan",
        "sqlite_scan",
        "sqlite_attach",
        "postgres_scan",
        "postgres_attach",
        "postgres_query",
        "postgres_execute",
        "mysql_scan",
        "mysql_query",
        "mysql_execute",
    }
)
_SIDE_EFFECTS = frozenset(
    {
        # time and locks: a candidate that stalls the worker
        "pg_sleep",
        "pg_sleep_for",
        "pg_sleep_until",
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_advisory_xact_lock",
        "pg_advisory_xact_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_try_advisory_xact_lock",
        "pg_try_advisory_xact_lock_shared",
        # server, session and sequence state
        "set_config",
        "nextval",
        "setval",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_promote",
        "pg_switch_wal",
        "pg_create_restore_point",
        "pg_backup_start",
        "pg_backup_stop",
        "pg_notify",
        "pg_logical_emit_message",
        "pg_create_logical_replication_slot",
        "pg_create_physical_replication_slot",
        "pg_drop_replication_slot",
        "txid_current",
        "pg_current_xact_id",
        # other sessions' SQL (the gold query may be running next door)
        "pg_stat_get_activity",
        "pg_stat_get_backend_activity",
        # SQL text executed behind the parser's back
        "dblink",
        "dblink_exec",
        "dblink_connect",
        "dblink_connect_u",
        "dblink_send_query",
        "query_to_xml",
        "query_to_xml_and_xmlschema",
        "query_to_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "query",
        "query_table",
        "json_execute_serialized_sql",
        # duckdb environment and secrets
        "getenv",
        "duckdb_secrets",
        "which_secret",
        "load_aws_credentials",
    }
)
_DENIED_FUNCTIONS = _FILE_READERS | _SIDE_EFFECTS
# `glob` lists files in duckdb; in sqlite glob(pattern, text) is an honest string match.
_DENIED_BY_DIALECT = {
    "sqlite": _DENIED_FUNCTIONS,
    "postgres": _DENIED_FUNCTIONS,
    "duckdb": _DENIED_FUNCTIONS | {"glob"},
}
# Relations that expose other sessions' queries, credentials or raw database pages.
_SENSITIVE_RELATIONS = frozenset(
    {
        "pg_stat_activity",
        "pg_stat_statements",
        "pg_stat_statements_info",
        "pg_authid",
        "pg_shadow",
        "pg_user_mappings",
        "pg_file_settings",
        "pg_hba_file_rules",
        "pg_ident_file_mappings",
        "pg_largeobject",
        "sqlite_dbpage",
        "duckdb_secrets",
    }
)
# duckdb turns a table name that looks like a file into a file scan: `FROM 'data.csv'`,
# `FROM "/etc/passwd"`, `FROM 's3://b/x.parquet'`, and also the unquoted `FROM data.csv`
# (it joins the qualified parts and scans the result when no such table exists).
_PATH_CHARS = frozenset("/\\:.~*?")
_FILE_SUFFIXES = frozenset(
    """csv tsv txt tbl psv dat parquet json jsonl ndjson gz gzip zst zstd xlsx xls arrow ipc feather avro orc
    db sqlite sqlite3 duckdb xml geojson shp gpkg""".split()
)
# Table functions duckdb may call in FROM/JOIN/LATERAL position. Readers (read_*, glob,
# *_scan, extension readers, query()) live there, so this position is allow-listed by name.
_DUCKDB_TABLE_FUNCTIONS = frozenset(
    {
        "range",
        "generate_series",
        "exploding_generate_series",
        "unnest",
        "explode",
        "json_each",
        "json_tree",
        "duckdb_tables",
        "duckdb_columns",
        "duckdb_views",
        "duckdb_schemas",
        "duckdb_constraints",
        "duckdb_indexes",
        "duckdb_types",
        "duckdb_functions",
        "pragma_table_info",
    }
)
_FROM_POSITIONS: tuple[type[exp.Expr], ...] = (exp.Table, exp.Lateral, exp.From, exp.Join)


@dataclass(frozen=True)
class GateResult:
    ok: bool  # safe to execute
    statement: str  # the candidate's own text of its single statement ("" if there is not exactly one)
    findings: tuple[Finding, ...]  # CRITICAL ones mean ok=False
    error: str = ""  # why the SQL did not parse (ok=False with no CRITICAL finding)
    projection: str = ""  # projection_kind of the statement when ok (parsed once, here)
    reads_tables: bool = False  # sandbox.sql.tables.reads_tables of the statement when ok


class _Unparseable(ValueError):
    pass


def _dialect(dialect: str) -> Dialect:
    if dialect not in DIALECTS:
        raise ValueError(f"unsupported SQL dialect {dialect!r}; expected one of {DIALECTS}")
    return Dialect.get_or_raise(dialect)


def _statements(sql: str, dialect: Dialect) -> list[list[Token]]:
    """Token runs between `;` tokens, empty runs (`;;`, comment-only tails) dropped."""
    chunks: list[list[Token]] = [[]]
    for token in dialect.tokenize(sql):
        if token.token_type == TokenType.SEMICOLON:
            chunks.append([])
        else:
            chunks[-1].append(token)
    return [chunk for chunk in chunks if chunk]


def _parse_chunk(sql: str, chunk: list[Token], dialect: Dialect) -> exp.Expr:
    trees = [tree for tree in dialect.parser().parse(chunk, sql) if tree is not None]
    if len(trees) != 1 or isinstance(trees[0], exp.Semicolon):
        raise _Unparseable("could not parse the statement")
    return trees[0]


def _text(sql: str, chunk: list[Token]) -> str:
    return sql[chunk[0].start : chunk[-1].end + 1]


def _evidence(node: exp.Expr, dialect: str) -> str:
    try:
        return node.sql(dialect=dialect)[:_EVIDENCE]
    except Exception:  # noqa: BLE001 - evidence is best effort; the finding itself must not fail
        return type(node).__name__


def _children(node: exp.Expr) -> list[exp.Expr]:
    """Child nodes in every arg, including lists, tuples and dicts (sqlglot's walk skips the last two)."""
    children: list[exp.Expr] = []
    pending: list[object] = list(node.args.values())
    while pending:
        item = pending.pop()
        if isinstance(item, exp.Expr):
            children.append(item)
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
    return children


def _function_names(node: exp.Func) -> set[str]:
    if isinstance(node, exp.Anonymous):
        return {node.name.lower().rsplit(".", 1)[-1]}
    return {name.lower() for name in type(node).sql_names()}


def _table_names(node: exp.Table) -> list[str]:
    parts = [node.args.get(key) for key in ("this", "db", "catalog")]
    return [part.name.lower() for part in parts if isinstance(part, (exp.Identifier, exp.Literal))]


def _sensitive(node: exp.Table) -> bool:
    return any(name in _SENSITIVE_RELATIONS for name in _table_names(node))


def _duckdb_file_scan(node: exp.Table) -> bool:
    names = _table_names(node)
    if any(_PATH_CHARS & set(name) for name in names):
        return True
    return len(names) > 1 and isinstance(node.this, exp.Identifier) and names[0] in _FILE_SUFFIXES


def _duckdb_table_function(node: exp.Func) -> bool:
    """A function called where a table goes (FROM, JOIN, LATERAL) in duckdb."""
    return isinstance(node.parent, _FROM_POSITIONS) and node.arg_key == "this"


def _check_tree(tree: exp.Expr, first_word: str, dialect: str, relations: list[exp.Expr]) -> list[Finding]:
    """CRITICAL findings for one parsed statement (empty when it is an allowed query). Its
    Table and CTE nodes are added to `relations` on the way (for `reads_tables`: one walk).

    Raises _Unparseable for a bare expression that is not a statement (`garbage here`
    parses as a column with an alias): that is a wrong answer, not an attack.
    """
    if not isinstance(tree, _TOP_LEVEL):
        if isinstance(tree, _BARE_EXPRESSIONS) and first_word.upper() not in _STATEMENT_WORDS:
            raise _Unparseable(f"not a SELECT query: {_evidence(tree, dialect)}")
        return [
            Finding(
                "sql_not_read_only",
                Severity.CRITICAL,
                f"{first_word.upper() or type(tree).__name__} is not a read-only query: "
                "only SELECT (with CTEs and set operations) may run",
                _evidence(tree, dialect),
            )
        ]
    denied = _DENIED_BY_DIALECT[dialect]
    findings: list[Finding] = []

    def reject(code: str, message: str, node: exp.Expr) -> None:
        findings.append(Finding(code, Severity.CRITICAL, message, _evidence(node, dialect)))

    stack = [tree]  # iterative: a deeply nested tree must not blow the Python stack
    while stack:
        node = stack.pop()
        if isinstance(node, _WRITES):
            reject("sql_not_read_only", f"{type(node).__name__} writes or changes state", node)
        elif not isinstance(node, _ALLOWED):
            reject("sql_unsupported_construct", f"{type(node).__name__} is not an allowed construct", node)
        elif isinstance(node, _DENIED_FUNC_CLASSES) or (isinstance(node, exp.Func) and _function_names(node) & denied):
            reject("sql_dangerous_function", "calls a function that reads files, sleeps or touches server state", node)
        elif isinstance(node, exp.Table) and _sensitive(node):
            reject("sql_sensitive_relation", "reads other sessions' queries, credentials or raw pages", node)
        elif dialect == "duckdb" and isinstance(node, exp.Table) and _duckdb_file_scan(node):
            reject("sql_file_access", "a table name that is a file, path or URL makes duckdb read it", node)
        elif (
            dialect == "duckdb"
            and isinstance(node, exp.Func)
            and _duckdb_table_function(node)
            and not _function_names(node) & _DUCKDB_TABLE_FUNCTIONS
        ):
            reject("sql_file_access", "only row generators may be called as table functions in duckdb", node)
        else:
            if isinstance(node, (exp.Table, exp.CTE)):
                relations.append(node)
            stack.extend(_children(node))  # a rejected node's subtree is not reported again
    return findings


def check_query(sql: str, dialect: str) -> GateResult:
    """Whether `sql` is exactly one read-only query that is safe to execute in `dialect`."""
    parser_dialect = _dialect(dialect)
    if len(sql) > MAX_SQL_CHARS:
        return GateResult(False, "", (), f"query is longer than {MAX_SQL_CHARS} characters")
    try:
        chunks = _statements(sql, parser_dialect)
    except Exception as exc:  # noqa: BLE001 - the gate fails closed on any tokenizer bug
        return GateResult(False, "", (), _error_text(exc))
    if not chunks:
        return GateResult(False, "", (), "empty query")
    findings: list[Finding] = []
    if len(chunks) > 1:
        findings.append(
            Finding(
                "sql_multiple_statements",
                Severity.CRITICAL,
                f"{len(chunks)} statements where exactly one query is allowed",
                _text(sql, chunks[1])[:_EVIDENCE],
            )
        )
    error = ""
    trees = []
    relations: list[exp.Expr] = []  # of the first statement
    for chunk in chunks[:_MAX_STATEMENTS]:  # the audit log names what was smuggled in
        try:
            tree = _parse_chunk(sql, chunk, parser_dialect)
            trees.append(tree)
            findings.extend(_check_tree(tree, chunk[0].text, dialect, relations if len(trees) == 1 else []))
        except Exception as exc:  # noqa: BLE001 - any parser failure, RecursionError included, means "does not parse"
            error = error or _error_text(exc)
    findings = findings[:_MAX_FINDINGS]
    statement = _text(sql, chunks[0]) if len(chunks) == 1 else ""
    ok = not error and not any(f.severity is Severity.CRITICAL for f in findings)
    projection = _projection_of(trees[0]) if ok else ""
    tables = [r for r in relations if isinstance(r, exp.Table)]
    reads = ok and reads_tables(tables, [r for r in relations if isinstance(r, exp.CTE)], dialect)
    return GateResult(ok, statement, tuple(findings), error, projection, reads)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "query is too deeply nested to analyse"
    text = str(exc).replace("\x1b[4m", "").replace("\x1b[0m", "").strip()
    return (text or type(exc).__name__)[:300]


def _parse_single(sql: str, dialect: str) -> exp.Expr:
    """The one statement in trusted SQL (gold or already gated); ValueError otherwise."""
    parser_dialect = _dialect(dialect)
    try:
        chunks = _statements(sql, parser_dialect)
        if len(chunks) != 1:
            raise _Unparseable(f"expected exactly one statement, found {len(chunks)}")
        return _parse_chunk(sql, chunks[0], parser_dialect)
    except Exception as exc:  # noqa: BLE001 - reported to the caller as ValueError
        raise ValueError(f"cannot parse SQL: {_error_text(exc)}") from None


def _unwrap(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Subquery) and not node.args.get("order"):
        node = node.this
    return node


def top_level_query(sql: str, dialect: str) -> exp.Expr:
    """The outermost query of trusted SQL, parentheses that carry no ORDER BY removed;
    ValueError if it is not exactly one parseable statement."""
    return _unwrap(_parse_single(sql, dialect))


def gold_orders_rows(gold_sql: str, dialect: str) -> bool:
    """True iff the outermost query has ORDER BY, so the result's row order is part of the answer.

    ORDER BY inside subqueries, CTEs, window specs or aggregates does not order the final
    rows; an ORDER BY after a UNION/INTERSECT/EXCEPT applies to the whole result and
    counts. Raises ValueError if `gold_sql` is not exactly one parseable statement (a
    task bug best caught when the task is loaded).
    """
    return bool(top_level_query(gold_sql, dialect).args.get("order"))


_CONSTANT_PARTS: tuple[type[exp.Expr], ...] = (
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.Alias,
    exp.Identifier,
    exp.Paren,
    exp.Neg,
    exp.Not,
    exp.Cast,
    exp.DataType,
    exp.DataTypeParam,
    exp.Tuple,
    exp.Interval,
    exp.Var,
    exp.Binary,
    exp.Func,
)


def _is_constant(expression: exp.Expr) -> bool:
    """Built from literals only: no columns, stars, subqueries, or argument-less functions."""
    for node in expression.walk():
        if isinstance(node, (exp.Column, exp.Star, exp.Query, exp.Dot)):
            return False
        if not isinstance(node, _CONSTANT_PARTS):
            return False
        if isinstance(node, exp.Func) and next(node.iter_expressions(), None) is None:
            return False  # random(), now(), CURRENT_DATE: not a literal
    return True


def _branches(node: exp.Expr) -> list[exp.Expr]:
    """The SELECT/VALUES leaves of a query, left to right."""
    node = _unwrap(node)
    if isinstance(node, exp.Subquery):
        return _branches(node.this)
    if isinstance(node, exp.SetOperation):
        return _branches(node.this) + _branches(node.expression)
    return [node]


def projection_kind(sql: str, dialect: str) -> str:
    """How the outermost query builds its columns: "star", "constant" or "columns".

    "star": its (first) SELECT projects `*` or `t.*`. "constant": every branch has no FROM
    and projects only expressions built from literals (SELECT 42, SELECT 'a' || 'b',
    SELECT 1, NULL), i.e. a hard-coded answer. Anything else is "columns". Raises
    ValueError if `sql` is not exactly one parseable statement.
    """
    return _projection_of(_parse_single(sql, dialect))


def _projection_of(tree: exp.Expr) -> str:
    branches = _branches(tree)
    first = branches[0]
    if isinstance(first, exp.Select) and any(
        isinstance(p, exp.Star) or (isinstance(p, exp.Column) and isinstance(p.this, exp.Star))
        for p in first.expressions
    ):
        return "star"

    def constant(branch: exp.Expr) -> bool:
        if isinstance(branch, exp.Values):
            return all(_is_constant(row) for row in branch.expressions)
        return (
            isinstance(branch, exp.Select)
            and not branch.args.get("from_")
            and not branch.args.get("joins")
            and all(_is_constant(p) for p in branch.expressions)
        )

    return "constant" if all(constant(b) for b in branches) else "columns"
