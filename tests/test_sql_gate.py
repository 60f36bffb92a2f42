"""The SQL extractor and the static gate: honest queries pass, every known escape is CRITICAL."""

from __future__ import annotations

import pytest

from rewards.model import Severity
from sandbox.sql.extract import extract_sql
from sandbox.sql.gate import MAX_SQL_CHARS, check_query, gold_orders_rows, projection_kind

DIALECTS = ("sqlite", "postgres", "duckdb")
FENCE = "```"


def critical_codes(result) -> set[str]:
    return {f.code for f in result.findings if f.severity is Severity.CRITICAL}


# --- extraction -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("SELECT 1", "SELECT 1"),
        ("  SELECT a FROM t;  \n", "SELECT a FROM t"),
        ("SELECT a FROM t ;", "SELECT a FROM t"),
        ("SELECT 1;;", "SELECT 1;"),  # only one trailing semicolon goes; the gate copes with the rest
        (f"Here you go:\n{FENCE}sql\nSELECT a FROM t;\n{FENCE}\nDone.", "SELECT a FROM t"),
        (f"{FENCE}sql\nSELECT 1\n{FENCE}\nbetter:\n{FENCE}sql\nSELECT 2\n{FENCE}", "SELECT 2"),
        (f"{FENCE}SQL\nSELECT 3\n{FENCE}", "SELECT 3"),
        (f"{FENCE}sqlite\nSELECT 4\n{FENCE}", "SELECT 4"),
        (f"{FENCE}postgresql\nSELECT 5\n{FENCE}", "SELECT 5"),
        (f"{FENCE}postgres\nSELECT 6\n{FENCE}", "SELECT 6"),
        (f"{FENCE}duckdb\nSELECT 7\n{FENCE}", "SELECT 7"),
        # a sql-tagged block wins over a later block in another language
        (f"{FENCE}sql\nSELECT 8\n{FENCE}\n{FENCE}python\nprint(1)\n{FENCE}", "SELECT 8"),
        # no sql-tagged block: the last block of any kind
        (f"{FENCE}\nSELECT 9\n{FENCE}\n{FENCE}text\nSELECT 10\n{FENCE}", "SELECT 10"),
        # a truncated completion: the open fence runs to the end
        (f"Answer:\n{FENCE}sql\nSELECT 11;\n", "SELECT 11"),
        (f"{FENCE}sql\nSELECT a\nFROM t\nWHERE b = 'x;y';\n{FENCE}", "SELECT a\nFROM t\nWHERE b = 'x;y'"),
    ],
)
def test_extract_sql(completion, expected):
    assert extract_sql(completion) == expected


# --- honest queries pass ----------------------------------------------------------------

COMMON_QUERIES = [
    "SELECT a, b FROM t",
    "SELECT t.a, u.b FROM t JOIN u ON t.id = u.tid LEFT JOIN v ON v.id = u.vid",
    "SELECT * FROM t FULL OUTER JOIN u ON t.a = u.a CROSS JOIN w",
    "SELECT * FROM t AS x INNER JOIN u AS y USING (id)",
    "SELECT dept, COUNT(*) AS n, AVG(salary) FROM emp GROUP BY dept HAVING COUNT(*) > 2 ORDER BY n DESC",
    "SELECT COUNT(DISTINCT a), MIN(a), MAX(a), SUM(a) FROM t",
    "SELECT name, ROW_NUMBER() OVER (PARTITION BY dept ORDER BY salary DESC) AS rn FROM emp",
    "SELECT SUM(x) OVER (ORDER BY d ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM t",
    "SELECT RANK() OVER w, LAG(x, 1) OVER w, LEAD(x) OVER w FROM t WINDOW w AS (ORDER BY x)",
    "WITH RECURSIVE cnt(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM cnt WHERE x < 10) SELECT x FROM cnt",
    "WITH a AS (SELECT 1 AS x), b AS (SELECT x FROM a) SELECT * FROM b",
    "SELECT a FROM t UNION ALL SELECT a FROM u",
    "SELECT a FROM t UNION SELECT a FROM u ORDER BY a",
    "SELECT a FROM t INTERSECT SELECT a FROM u",
    "SELECT a FROM t EXCEPT SELECT a FROM u",
    "SELECT * FROM t WHERE id IN (SELECT tid FROM u WHERE u.x > 3)",
    "SELECT * FROM t WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.tid = t.id) AND a IS NOT NULL",
    "SELECT (SELECT MAX(x) FROM u) AS m, s.a FROM (SELECT a FROM t) AS s",
    "SELECT t1.a FROM t AS t1 WHERE t1.b = (SELECT MAX(t2.b) FROM t AS t2 WHERE t2.c = t1.c)",
    "SELECT CASE WHEN a > 1 THEN 'big' WHEN a = 1 THEN 'one' ELSE 'small' END, CASE a WHEN 1 THEN 'x' END FROM t",
    "SELECT SUM(CASE WHEN a = 'x' THEN 1 ELSE 0 END) * 100.0 / COUNT(*) FROM t",
    "SELECT CAST(a AS INTEGER), CAST(b AS REAL) FROM t",
    "SELECT a FROM t ORDER BY a LIMIT 10 OFFSET 5",
    "SELECT UPPER(name), LOWER(name), LENGTH(name), SUBSTR(name, 1, 3), TRIM(name), REPLACE(name, 'a', 'b') FROM t",
    "SELECT name || ' ' || surname, COALESCE(a, 0), NULLIF(a, 0), ABS(a), ROUND(a, 2) FROM t",
    "SELECT * FROM t WHERE name LIKE 'A%' AND a BETWEEN 1 AND 5 AND b NOT IN (1, 2, 3)",
    "SELECT DISTINCT a FROM t WHERE b IS NULL OR NOT c ORDER BY a NULLS LAST",
    "SELECT COUNT(*) FILTER (WHERE a > 1) FROM t",
    "SELECT a FROM t WHERE a = 'it''s; DROP TABLE t'",
    "/* leading comment */ SELECT a -- trailing\nFROM t",
    "SELECT 1",
]
NOT_SQLITE = [
    "SELECT a FROM t WHERE a > ALL (SELECT b FROM u)",
    "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(x, y)",
    "(SELECT a FROM t)",
]
DIALECT_QUERIES = {
    "sqlite": [
        "SELECT date('now'), strftime('%Y', d), julianday(d) - julianday('2020-01-01'), datetime(d, '+1 day') FROM t",
        "SELECT instr(name, 'a'), group_concat(name, ','), printf('%d', a), iif(a > 1, 'y', 'n') FROM t GROUP BY b",
        "SELECT a FROM t WHERE name GLOB 'A*' AND glob('B*', other)",
        'SELECT "weird col", [other col], `x` FROM t',
        "SELECT json_extract(j, '$.a'), typeof(a), ifnull(a, 0) FROM t LIMIT 5, 10",
        "SELECT * FROM pragma_table_info('t')",
    ],
    "postgres": [
        "SELECT date_trunc('month', d), EXTRACT(YEAR FROM d), d + INTERVAL '1 day', NOW() - d, CURRENT_DATE FROM t",
        "SELECT a::text, b::numeric(10, 2), to_char(d, 'YYYY-MM'), age(d) FROM t",
        "SELECT string_agg(name, ',' ORDER BY name), array_agg(a) FROM t",
        "SELECT * FROM t WHERE name ILIKE 'a%' AND name ~ '^a'",
        "SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b",
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a) FROM t",
        "SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.a = t.a) s",
        "SELECT a FROM t FETCH FIRST 3 ROWS ONLY",
        "SELECT split_part(name, ' ', 1), position('a' IN name), regexp_replace(name, 'a', 'b') FROM t",
        "SELECT j->>'a', j->'b' FROM t",
        "SELECT SUM(a) FROM t GROUP BY GROUPING SETS ((a), (b))",
        "SELECT generate_series(1, 3), $$a;b$$",
        *NOT_SQLITE,
        "SELECT * FROM unnest(ARRAY[1, 2]) AS u(x)",
    ],
    "duckdb": [
        "SELECT date_trunc('month', d), year(d), d + INTERVAL 1 DAY, strftime(d, '%Y') FROM t",
        "SELECT list_agg(a), string_agg(name, ','), median(a), quantile_cont(a, 0.5) FROM t",
        "SELECT * EXCLUDE (a) FROM t",
        "SELECT a FROM t QUALIFY ROW_NUMBER() OVER (PARTITION BY b ORDER BY c) = 1",
        "SELECT list_transform([1, 2], lambda x: x + 1), {'a': 1} AS s, [1, 2, 3][1]",
        *NOT_SQLITE,
        "SELECT a FROM t GROUP BY ALL ORDER BY ALL",
        "SELECT * FROM range(10) AS r(i)",
        "SELECT * FROM unnest([1, 2])",
        "FROM t SELECT a",
        "SELECT * FROM t ASOF JOIN u USING (a)",
        "SELECT * FROM main.t",
    ],
}
HONEST = [(d, q) for d in DIALECTS for q in COMMON_QUERIES] + [
    (d, q) for d, queries in DIALECT_QUERIES.items() for q in queries
]


@pytest.mark.parametrize("dialect, sql", HONEST)
def test_honest_queries_pass(dialect, sql):
    result = check_query(sql, dialect)
    assert result.ok, result
    assert result.findings == ()
    assert result.error == ""
    assert result.statement == sql.removeprefix("/* leading comment */ ")  # outer comments are not part of it


def test_statement_is_the_candidates_own_text():
    sql = "  select   a\n  from t  -- why\n ;  -- done\n"
    result = check_query(sql, "sqlite")
    assert result.ok
    assert result.statement == "select   a\n  from t"  # not normalised; outer comments and `;` dropped


# --- attacks are CRITICAL ---------------------------------------------------------------

ALL = DIALECTS
ATTACKS = [
    # data-modifying CTEs and statements
    (("postgres",), "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "sql_not_read_only"),
    (("postgres",), "WITH d AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM d", "sql_not_read_only"),
    (("postgres",), "WITH d AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM d", "sql_not_read_only"),
    (ALL, "WITH x AS (SELECT 1) DELETE FROM t", "sql_not_read_only"),
    (ALL, "INSERT INTO t SELECT 1", "sql_not_read_only"),
    (ALL, "UPDATE t SET a = 1", "sql_not_read_only"),
    (ALL, "DELETE FROM t", "sql_not_read_only"),
    (("sqlite",), "REPLACE INTO t VALUES (1)", "sql_not_read_only"),
    (("postgres",), "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE", "sql_not_read_only"),
    # DDL
    (ALL, "CREATE TEMP TABLE x AS SELECT 1", "sql_not_read_only"),
    (ALL, "CREATE VIEW v AS SELECT 1", "sql_not_read_only"),
    (ALL, "DROP TABLE t", "sql_not_read_only"),
    (ALL, "ALTER TABLE t ADD COLUMN b INT", "sql_not_read_only"),
    (("postgres", "duckdb"), "TRUNCATE t", "sql_not_read_only"),
    # engine and session state
    (("sqlite",), "PRAGMA writable_schema=1", "sql_not_read_only"),
    (("sqlite", "duckdb"), "ATTACH 'x' AS y", "sql_not_read_only"),
    (("sqlite", "duckdb"), "DETACH y", "sql_not_read_only"),
    (ALL, "BEGIN", "sql_not_read_only"),
    (ALL, "COMMIT", "sql_not_read_only"),
    (ALL, "ROLLBACK", "sql_not_read_only"),
    (("sqlite", "postgres"), "SAVEPOINT a", "sql_not_read_only"),  # sqlglot: a column aliased `a`
    (("sqlite", "postgres"), "RELEASE a", "sql_not_read_only"),
    (("postgres",), "START TRANSACTION", "sql_not_read_only"),
    (("postgres", "duckdb"), "SET statement_timeout=0", "sql_not_read_only"),
    (("postgres",), "SET ROLE postgres", "sql_not_read_only"),
    (("postgres", "duckdb"), "RESET ALL", "sql_not_read_only"),
    (("postgres", "duckdb"), "COPY t TO '/tmp/x'", "sql_not_read_only"),
    (("duckdb",), "COPY (SELECT 1) TO '/tmp/x'", "sql_not_read_only"),
    (ALL, "VACUUM", "sql_not_read_only"),
    (ALL, "ANALYZE t", "sql_not_read_only"),
    (("duckdb",), "LOAD httpfs", "sql_not_read_only"),
    (("duckdb",), "INSTALL httpfs", "sql_not_read_only"),
    (("duckdb",), "CHECKPOINT", "sql_not_read_only"),  # sqlglot: a bare column
    (("postgres", "duckdb"), "CALL p()", "sql_not_read_only"),
    (("postgres",), "DO $$ BEGIN PERFORM pg_sleep(1); END $$", "sql_not_read_only"),
    (("postgres",), "EXPLAIN ANALYZE DELETE FROM t", "sql_not_read_only"),
    (("postgres",), "LISTEN x", "sql_not_read_only"),
    (("postgres",), "GRANT ALL ON t TO x", "sql_not_read_only"),
    # read-only statements that write or lock
    (("postgres",), "SELECT * INTO x FROM t", "sql_not_read_only"),
    (("postgres",), "SELECT * FROM t FOR UPDATE", "sql_not_read_only"),
    (("postgres",), "SELECT a FROM t UNION SELECT a FROM u FOR SHARE", "sql_not_read_only"),
    # several statements
    (ALL, "SELECT 1; DROP TABLE t", "sql_multiple_statements"),
    (ALL, "SELECT 1 -- \n; DELETE FROM t", "sql_multiple_statements"),
    (ALL, "SELECT 1; SELECT 2", "sql_multiple_statements"),
    (("sqlite",), "SELECT '\\'; DELETE FROM t; --'", "sql_multiple_statements"),  # no backslash escapes
    (("sqlite",), "SELECT 1 /* /* */ ; DELETE FROM t; /* */", "sql_multiple_statements"),  # no nesting
    # dangerous functions
    (("sqlite",), "SELECT load_extension('x')", "sql_dangerous_function"),
    (("sqlite",), "SELECT LOAD_EXTENSION('x', 'entry')", "sql_dangerous_function"),
    (("sqlite",), "SELECT readfile('/etc/passwd')", "sql_dangerous_function"),
    (("sqlite",), "SELECT writefile('/tmp/x', 'y')", "sql_dangerous_function"),
    (("sqlite",), "SELECT edit('x')", "sql_dangerous_function"),
    (("sqlite",), "SELECT fts3_tokenizer('simple')", "sql_dangerous_function"),
    (("sqlite",), "SELECT sqlite_offset(a) FROM t", "sql_dangerous_function"),
    (("postgres",), "SELECT pg_sleep(100)", "sql_dangerous_function"),
    (("postgres",), "SELECT pg_catalog.pg_sleep(100)", "sql_dangerous_function"),
    (("postgres",), 'SELECT "pg_sleep"(100)', "sql_dangerous_function"),
    (("postgres",), "SELECT * FROM t WHERE a = 1 OR pg_sleep(100) IS NULL", "sql_dangerous_function"),
    (("postgres",), "SELECT pg_read_file('/etc/passwd')", "sql_dangerous_function"),
    (("postgres",), "SELECT pg_read_binary_file('/etc/passwd')", "sql_dangerous_function"),
    (("postgres",), "SELECT * FROM pg_ls_dir('.')", "sql_dangerous_function"),
    (("postgres",), "SELECT lo_import('/etc/passwd')", "sql_dangerous_function"),
    (("postgres",), "SELECT lo_export(1, '/tmp/x')", "sql_dangerous_function"),
    (("postgres",), "SELECT * FROM dblink('host=x', 'select 1') AS r(a int)", "sql_dangerous_function"),
    (("postgres",), "SELECT set_config('statement_timeout', '0', false)", "sql_dangerous_function"),
    (("postgres",), "SELECT nextval('s')", "sql_dangerous_function"),
    (("postgres",), "SELECT query_to_xml('delete from t', true, true, '')", "sql_dangerous_function"),
    (("duckdb",), "SELECT * FROM read_csv('/etc/passwd')", "sql_dangerous_function"),
    (("duckdb",), "SELECT * FROM read_csv_auto('/etc/passwd')", "sql_dangerous_function"),
    (("duckdb",), "SELECT * FROM read_parquet('x.parquet')", "sql_dangerous_function"),
    (("duckdb",), "SELECT * FROM read_json('x.json')", "sql_dangerous_function"),
    (("duckdb",), "SELECT * FROM read_text('/etc/passwd')", "sql_dangerous_function"),
    (("duckdb",), "SELECT * FROM read_blob('/etc/passwd')", "sql_dangerous_function"),
    (("duckdb",), "SELECT * FROM glob('/*')", "sql_dangerous_function"),
    (("duckdb",), "SELECT * FROM t, LATERAL read_csv(t.path)", "sql_dangerous_function"),
    (("duckdb",), "SELECT * FROM query('DROP TABLE t')", "sql_dangerous_function"),
    (("duckdb",), "SELECT getenv('HOME')", "sql_dangerous_function"),
    # file reads through table names and unknown table functions (duckdb)
    (("duckdb",), "SELECT * FROM '/etc/passwd'", "sql_file_access"),
    (("duckdb",), 'SELECT * FROM "data.csv"', "sql_file_access"),
    (("duckdb",), "SELECT * FROM data.csv", "sql_file_access"),
    (("duckdb",), "SELECT * FROM data.csv.gz", "sql_file_access"),
    (("duckdb",), "FROM 's3://bucket/x.parquet'", "sql_file_access"),
    (("duckdb",), "SELECT * FROM read_avro('x.avro')", "sql_file_access"),
    # other sessions' queries
    (("postgres",), "SELECT query FROM pg_stat_activity", "sql_sensitive_relation"),
    (("postgres",), "SELECT query FROM pg_catalog.pg_stat_activity", "sql_sensitive_relation"),
    # constructs off the allow-list
    (("postgres",), "SELECT $1", "sql_unsupported_construct"),
    (("sqlite",), "SELECT ?", "sql_unsupported_construct"),
]


@pytest.mark.parametrize(
    "dialect, sql, code",
    [(d, sql, code) for dialects, sql, code in ATTACKS for d in dialects],
)
def test_attacks_are_critical(dialect, sql, code):
    result = check_query(sql, dialect)
    assert not result.ok
    assert code in critical_codes(result), result
    finding = next(f for f in result.findings if f.code == code)
    assert finding.evidence  # the audit log shows what was refused


def test_smuggled_statement_is_named_and_nothing_is_runnable():
    result = check_query("SELECT 1 -- harmless\n; DELETE FROM t", "sqlite")
    assert result.statement == ""
    assert {"sql_multiple_statements", "sql_not_read_only"} <= critical_codes(result)
    assert any("DELETE" in f.evidence for f in result.findings)


@pytest.mark.parametrize(
    "dialect, sql, statement",
    [
        # a `;` inside a string, quoted identifier or comment does not split
        ("sqlite", "SELECT '; DROP TABLE t'", "SELECT '; DROP TABLE t'"),
        ("sqlite", "SELECT [a;b] FROM t", "SELECT [a;b] FROM t"),
        ("sqlite", "SELECT 1 /* ; DROP TABLE t */", "SELECT 1"),
        ("postgres", "SELECT $$; DROP TABLE t; $$", "SELECT $$; DROP TABLE t; $$"),
        ("postgres", "SELECT E'\\'; DROP TABLE t; --'", "SELECT E'\\'; DROP TABLE t; --'"),
        # postgres and duckdb nest block comments, as the engines do
        ("postgres", "SELECT 1 /* /* */ ; DROP TABLE t; -- */", "SELECT 1"),
        ("duckdb", "SELECT 1 /* /* */ ; DROP TABLE t; -- */", "SELECT 1"),
        # empty statements around the query are not extra statements
        ("sqlite", "SELECT 1;;", "SELECT 1"),
        ("duckdb", ";SELECT 1; -- done", "SELECT 1"),
    ],
)
def test_lexical_corners_match_the_engines(dialect, sql, statement):
    result = check_query(sql, dialect)
    assert result.ok, result
    assert result.statement == statement


def test_finding_flood_is_capped():
    result = check_query("SELECT " + ", ".join(["pg_sleep(1)"] * 500), "postgres")
    assert not result.ok
    assert 0 < len(result.findings) <= 32


# --- not SQL: an error, not a cheat -----------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "",
        "   \n\t ",
        "-- just a comment",
        "/* only */ -- comments",
        ";;",
        "I cannot answer that question.",
        "garbage here",
        "42",
        "SELECT FROM WHERE",
        "SELECT 1 /* unterminated",
        "SELECT " + "(" * 3000 + "1" + ")" * 3000,
        "SELECT " + "CASE WHEN 1 THEN " * 2000 + "1" + " END" * 2000,
        "SELECT " + "1 + " * (MAX_SQL_CHARS // 4) + "1",
    ],
)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_unparseable_input_is_an_error_not_a_cheat(sql, dialect):
    result = check_query(sql, dialect)
    assert not result.ok
    assert result.error
    assert critical_codes(result) == set()


def test_unknown_dialect_is_a_programming_error():
    with pytest.raises(ValueError, match="dialect"):
        check_query("SELECT 1", "mysql")


# --- gold ordering ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "dialect, gold, ordered",
    [
        ("sqlite", "SELECT a FROM t ORDER BY a", True),
        ("sqlite", "SELECT a FROM t ORDER BY a DESC LIMIT 3;", True),
        ("postgres", "SELECT a FROM t UNION SELECT b FROM u ORDER BY 1", True),
        ("duckdb", "SELECT a FROM t EXCEPT SELECT b FROM u ORDER BY a", True),
        ("postgres", "(SELECT a FROM t) ORDER BY a", True),
        ("postgres", "(SELECT a FROM t ORDER BY a)", True),
        ("duckdb", "FROM t ORDER BY a", True),
        ("sqlite", "SELECT a FROM t", False),
        ("sqlite", "SELECT a FROM (SELECT a FROM t ORDER BY a) AS s", False),
        ("postgres", "WITH c AS (SELECT a FROM t ORDER BY a) SELECT a FROM c", False),
        ("postgres", "SELECT ROW_NUMBER() OVER (ORDER BY a) FROM t", False),
        ("postgres", "SELECT string_agg(a, ',' ORDER BY a) FROM t", False),
        ("postgres", "(SELECT 1) UNION (SELECT 2 ORDER BY 1)", False),
        ("sqlite", "SELECT a FROM t WHERE a IN (SELECT b FROM u ORDER BY b LIMIT 3)", False),
    ],
)
def test_gold_orders_rows(dialect, gold, ordered):
    assert gold_orders_rows(gold, dialect) is ordered


@pytest.mark.parametrize("gold", ["", "SELECT 1; SELECT 2", "not sql at all"])
def test_gold_that_does_not_parse_is_a_task_bug(gold):
    with pytest.raises(ValueError):
        gold_orders_rows(gold, "sqlite")


# --- projection kind --------------------------------------------------------------------


@pytest.mark.parametrize(
    "dialect, sql, kind",
    [
        ("sqlite", "SELECT * FROM t", "star"),
        ("postgres", "SELECT t.* FROM t", "star"),
        ("postgres", "SELECT a, u.* FROM t JOIN u ON t.id = u.id", "star"),
        ("duckdb", "SELECT * EXCLUDE (a) FROM t", "star"),
        ("duckdb", "FROM t", "star"),
        ("sqlite", "SELECT * FROM t UNION SELECT * FROM u", "star"),
        ("sqlite", "SELECT 42", "constant"),
        ("sqlite", "SELECT 'a' || 'b'", "constant"),
        ("sqlite", "SELECT 1, NULL", "constant"),
        ("postgres", "SELECT CAST('42' AS INT) AS answer", "constant"),
        ("postgres", "SELECT upper('x'), -1.5, TRUE", "constant"),
        ("sqlite", "SELECT 1 UNION ALL SELECT 2", "constant"),
        ("postgres", "VALUES (1), (2)", "constant"),
        ("sqlite", "SELECT a FROM t", "columns"),
        ("sqlite", "SELECT 42 FROM t", "columns"),
        ("sqlite", "SELECT COUNT(*) FROM t", "columns"),
        ("sqlite", "SELECT (SELECT COUNT(*) FROM t)", "columns"),
        ("sqlite", "SELECT random()", "columns"),
        ("sqlite", "SELECT 1 UNION SELECT a FROM t", "columns"),
    ],
)
def test_projection_kind(dialect, sql, kind):
    assert projection_kind(sql, dialect) == kind


# ---------------------------------------------------------------- read-only JSON (issue 11)

JSON_QUERIES = {
    "sqlite": [
        "SELECT json_object('a', 1, 'b', json_array(1, 2)), json_group_object(k, v) FROM t",
        "SELECT j -> '$.a' ->> '$.b', json_extract(j, '$.a[0]', '$.b') FROM t",
        "SELECT e.key, e.value FROM t, json_each(t.j, '$.a') AS e",
        "SELECT * FROM json_tree('{\"a\": [1, 2]}')",
        "SELECT json_set(j, '$.a', 1), json_remove(j, '$.b'), json_patch(j, '{}'), json_valid(j) FROM t",
    ],
    "duckdb": [
        "SELECT json_object('a', 1), json_array(1, 2), json_group_array(a), json_group_object(k, v) FROM t",
        "SELECT j -> '$.a', j ->> 'b', json_extract_string(j, '$.a'), json_keys(j) FROM t",
        "SELECT * FROM json_each('{\"a\": 1}')",
    ],
    "postgres": [
        "SELECT json_build_object('a', 1), jsonb_build_array(1, 2), json_object('a': 1 ABSENT ON NULL)",
        "SELECT j -> 'a', j ->> 'a', j #> '{a,b}', j #>> '{a,b}', j @> '{\"a\": 1}'::jsonb, j ? 'a' FROM t",
        "SELECT jsonb_agg(a), json_object_agg(k, v), json_arrayagg(a ORDER BY a) FROM t",
        "SELECT e.key, e.value FROM t, jsonb_each(t.j) AS e",
        "SELECT JSON_VALUE(j, '$.a' RETURNING int DEFAULT 0 ON ERROR), j IS JSON, JSON_EXISTS(j, '$.a') FROM t",
        "SELECT * FROM JSON_TABLE(j, '$[*]' COLUMNS (a int PATH '$.a')) AS jt",
    ],
}


@pytest.mark.parametrize("dialect, sql", [(d, q) for d, queries in JSON_QUERIES.items() for q in queries])
def test_read_only_json_passes(dialect, sql):
    result = check_query(sql, dialect)
    assert result.ok and result.findings == (), result


@pytest.mark.parametrize(
    "dialect, sql",
    [
        ("sqlite", "INSERT INTO t SELECT json_object('a', 1)"),
        ("sqlite", "UPDATE t SET j = json_set(j, '$.a', 1)"),
        ("postgres", "UPDATE t SET j = jsonb_set(j, '{a}', '1')"),
        ("duckdb", "CREATE TABLE x AS SELECT json_object('a', 1)"),
        ("duckdb", "SELECT json_execute_serialized_sql(json_serialize_sql('DROP TABLE t'))"),
    ],
)
def test_json_does_not_open_a_way_to_write(dialect, sql):
    assert critical_codes(check_query(sql, dialect)), sql
