"""file-service as an MCP server, driven by real clients against a running binary.

The official Python SDK talks to /mcp over streamable HTTP (both the 2026-07-28 stateless
protocol and the initialize handshake of 2025-11-25) and through the `file-service mcp` stdio
bridge; the MCP Inspector's CLI lists and calls the tools. Every answer is checked against what
the REST API says of the same file. tests/mcp/run starts the server and sets the MCP_TEST_*
variables.
"""

import json
import os
import re
import subprocess
import uuid

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

BIN = os.environ["MCP_TEST_BIN"]
BASE = os.environ["MCP_TEST_BASE"]
WORK = os.environ["MCP_TEST_WORK"]
INSPECTOR = os.environ["MCP_TEST_INSPECTOR"]
MCP_URL = BASE + "/mcp"
MAX_ROWS = 500
MAX_CHARS = 50_000
TOOLS = {"list_files", "describe_file", "read_rows", "query", "get_active_file", "set_active_file"}
SALES_ROWS = 1234
MODES = ["auto", "legacy"]

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def token(user):
    return subprocess.run([BIN, "token", "--user", str(user)], check=True, capture_output=True, text=True).stdout.strip()


ALICE = token(1)
BOB = token(2)


def rest(method, path, tok=ALICE, **kwargs):
    with httpx2.Client(base_url=BASE + "/api/v1", timeout=60) as c:
        return c.request(method, path, headers={"Authorization": f"Bearer {tok}"}, **kwargs)


def upload(tok, name, text, filename, session=None):
    r = rest(
        "POST",
        "/files/",
        tok,
        data={"file_name": name, "session_id": session or str(uuid.uuid4()), "description": f"{name} for the MCP tests"},
        files={"file": (filename, text.encode(), "text/csv")},
    )
    assert r.status_code in (201, 409), r.text


def sales_csv():
    lines = ["id,region,amount,when"]
    for i in range(SALES_ROWS):
        lines.append(f"{i},{['north', 'south', 'east'][i % 3]},{i * 1.5},2024-01-{1 + i % 28:02d}")
    return "\n".join(lines) + "\n"


def notes_csv():
    lines = ["n,note"]
    for i in range(400):
        lines.append(f"{i},{'note %d ' % i + 'x' * 300}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session", autouse=True)
def files():
    upload(ALICE, "sales", sales_csv(), "sales.csv")
    upload(ALICE, "notes 2024", notes_csv(), "notes.csv")
    upload(ALICE, "regions", "region,manager\nnorth,Ann\nsouth,Bo\neast,Cy\n", "regions.csv")
    upload(BOB, "secret", "a,b\n1,2\n", "secret.csv")
    upload(BOB, "sales", "only,bob\n1,2\n", "sales.csv")


def http_client(tok=ALICE, mode="auto", headers=None):
    hdrs = {"Authorization": f"Bearer {tok}"} if tok else {}
    hdrs.update(headers or {})
    client = httpx2.AsyncClient(headers=hdrs, timeout=httpx2.Timeout(60, read=120))
    return Client(streamable_http_client(MCP_URL, http_client=client), mode=mode, cache=None)


def bridge_client(*args, env=None, mode="legacy"):
    params = StdioServerParameters(command=BIN, args=["mcp", *args], env=env, cwd=WORK)
    return Client(params, mode=mode, cache=None)


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def text_of(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def call_ok(client, tool, args):
    result = await client.call_tool(tool, args)
    assert not result.is_error, text_of(result)
    assert isinstance(result.structured_content, dict), result
    return result


async def call_error(client, tool, args):
    result = await client.call_tool(tool, args)
    assert result.is_error, result
    return text_of(result)


# ----- tools, schemas, annotations -----


@pytest.mark.parametrize("mode", MODES)
async def test_the_six_tools_have_schemas_and_hints(mode):
    async with http_client(mode=mode) as client:
        tools = (await client.list_tools()).tools
        assert {t.name for t in tools} == TOOLS
        for tool in tools:
            assert tool.description and len(tool.description) > 60, tool.name
            assert tool.input_schema["type"] == "object", tool.name
            assert tool.output_schema and tool.output_schema["type"] == "object", tool.name
            assert tool.annotations.read_only_hint is (tool.name != "set_active_file"), tool.name
        by_name = {t.name: t for t in tools}
        assert set(by_name["read_rows"].input_schema["required"]) == {"name"}
        assert set(by_name["query"].input_schema["properties"]) == {"sql", "name", "session_id", "limit"}
        assert set(by_name["list_files"].input_schema["properties"]) == {"query", "limit", "cursor"}


# ----- every tool against the REST API -----


def info_of_rest(record):
    return {
        "name": record["file_name"],
        "format": record["format"],
        "size_bytes": record["size_bytes"],
        "rows": record["row_count"],
        "columns": record["column_count"],
        "description": record["description"],
        "updated": record["updated_at"],
    }


@pytest.mark.parametrize("mode", MODES)
async def test_list_files_says_what_the_api_says(mode):
    listed = rest("GET", "/files/").json()
    async with http_client(mode=mode) as client:
        result = await call_ok(client, "list_files", {})
        data = result.structured_content
        assert data["files"] == [info_of_rest(r) for r in listed]
        assert data["total"] == len(listed) and data["truncated"] is False and data["next_cursor"] is None
        assert "sales" in text_of(result) and "secret" not in text_of(result)
        # Filtered by a substring of the name or of the description, case-insensitive.
        only = (await call_ok(client, "list_files", {"query": "NOTES"})).structured_content
        assert [f["name"] for f in only["files"]] == ["notes 2024"]
        # Paged one at a time through the cursor: the same files, in the same order.
        names, cursor = [], None
        while True:
            args = {"limit": 1} if cursor is None else {"limit": 1, "cursor": cursor}
            page = await call_ok(client, "list_files", args)
            names += [f["name"] for f in page.structured_content["files"]]
            cursor = page.structured_content["next_cursor"]
            if cursor is None:
                break
            assert page.structured_content["truncated"] and f'cursor "{cursor}"' in text_of(page)
        assert names == [r["file_name"] for r in listed]


@pytest.mark.parametrize("mode", MODES)
async def test_describe_file_gives_the_summary_and_profile_of_the_api(mode):
    record = rest("GET", "/files/sales").json()
    profile = rest("GET", "/files/sales/profile").json()
    async with http_client(mode=mode) as client:
        result = await call_ok(client, "describe_file", {"name": "sales"})
    data = result.structured_content
    assert data["summary"] == record["summary"] and data["truncated"] is False
    assert data["file"] == info_of_rest(record)
    assert [c["name"] for c in data["profile"]] == [c["name"] for c in profile["columns"]]
    for mine, theirs in zip(data["profile"], profile["columns"]):
        assert mine["dtype"] == theirs["dtype"]
        assert mine["missing"] == theirs["null_count"]
        assert mine["distinct"] == theirs["unique_count"]
        assert mine["min"] == theirs.get("min") and mine["max"] == theirs.get("max")
        assert mine["mean"] == theirs.get("mean")
        assert mine["top_values"] == theirs["top_values"]
    assert record["summary"].splitlines()[0] in text_of(result)


async def test_read_rows_pages_through_the_whole_file_as_the_query_api_reads_it():
    reference = rest("POST", "/files/sales/query", json={"sql": "SELECT * FROM data", "limit": 100000}).json()
    assert reference["row_count"] == SALES_ROWS
    async with http_client() as client:
        rows, offset = [], 0
        while offset is not None:
            page = (await call_ok(client, "read_rows", {"name": "sales", "offset": offset, "limit": 300})).structured_content
            assert page["offset"] == offset and page["total_rows"] == SALES_ROWS
            assert page["columns"] == reference["columns"]
            rows += page["rows"]
            offset = page["next_offset"]
        assert rows == reference["rows"]
        # Any offset, not only the first rows; chosen columns, in the order asked.
        tail = (await call_ok(client, "read_rows", {"name": "sales", "offset": SALES_ROWS - 2, "columns": ["when", "id"]})).structured_content
        assert tail["rows"] == [[r[3], r[0]] for r in reference["rows"][-2:]]
        assert tail["next_offset"] is None and tail["truncated"] is False
        # The first rows are the preview's (the file as written).
        preview = rest("GET", "/files/sales/preview", params={"rows": 5}).json()
        first = (await call_ok(client, "read_rows", {"name": "sales", "limit": 5})).structured_content
        assert [str(r[0]) for r in first["rows"]] == [r[0] for r in preview["rows"]]


async def test_query_answers_as_the_query_route_does():
    sql = 'SELECT region, SUM(amount) AS total, COUNT(*) AS n FROM data JOIN "regions" USING (region) GROUP BY region ORDER BY region'
    reference = rest("POST", "/files/sales/query", json={"sql": sql}).json()
    async with http_client() as client:
        data = (await call_ok(client, "query", {"sql": sql, "name": "sales"})).structured_content
    assert data["columns"] == reference["columns"] and data["rows"] == reference["rows"]
    assert data["row_count"] == 3 and data["truncated"] is False


async def test_active_file_is_shared_with_rest_both_ways():
    session = str(uuid.uuid4())
    async with http_client() as client:
        # Set through MCP, read through REST.
        set_result = await call_ok(client, "set_active_file", {"session_id": session, "name": "regions"})
        assert set_result.structured_content["file"]["name"] == "regions"
        assert rest("GET", f"/files/active/{session}").json()["file_name"] == "regions"
        # Set through REST, read through MCP.
        assert rest("POST", f"/files/active/{session}", json={"file_name": "sales"}).status_code == 200
        active = (await call_ok(client, "get_active_file", {"session_id": session})).structured_content
        assert active["file"]["name"] == "sales" and active["summary"] == rest("GET", "/files/sales").json()["summary"]
        # The query tool on the session's active file.
        data = (await call_ok(client, "query", {"sql": "SELECT COUNT(*) AS n FROM data", "session_id": session})).structured_content
        assert data["rows"] == [[SALES_ROWS]]
        # Cleared through REST: the tool says what the API says.
        assert rest("DELETE", f"/files/active/{session}").status_code == 204
        detail = rest("GET", f"/files/active/{session}").json()["detail"]
        assert await call_error(client, "get_active_file", {"session_id": session}) == detail


# ----- caps -----


async def test_rows_are_capped_and_the_cut_says_how_to_go_on():
    async with http_client() as client:
        page = await call_ok(client, "read_rows", {"name": "sales", "limit": 1000})
        data = page.structured_content
        assert data["row_count"] == MAX_ROWS and data["truncated"] is True and data["next_offset"] == MAX_ROWS
        assert "MCP_MAX_ROWS" in text_of(page) and f"offset {MAX_ROWS}" in text_of(page)
        answer = await call_ok(client, "query", {"sql": "SELECT * FROM data", "name": "sales"})
        assert answer.structured_content["row_count"] == MAX_ROWS and answer.structured_content["truncated"] is True
        assert "Truncated" in text_of(answer) and "OFFSET" in text_of(answer)
        # A smaller limit than the result: cut, and said so.
        small = (await call_ok(client, "query", {"sql": "SELECT * FROM data", "name": "sales", "limit": 10})).structured_content
        assert small["row_count"] == 10 and small["truncated"] is True


async def test_characters_are_capped_and_the_cut_says_so():
    async with http_client() as client:
        page = await call_ok(client, "read_rows", {"name": "notes 2024", "limit": 400})
        data = page.structured_content
        assert 0 < data["row_count"] < 400 and data["truncated"] is True
        assert data["next_offset"] == data["row_count"]
        assert len(compact(data)) <= MAX_CHARS and len(text_of(page)) <= MAX_CHARS
        assert "MCP_MAX_CHARS" in text_of(page)
        answer = await call_ok(client, "query", {"sql": 'SELECT * FROM "notes 2024"', "name": "sales"})
        assert answer.structured_content["truncated"] is True
        assert len(compact(answer.structured_content)) <= MAX_CHARS and len(text_of(answer)) <= MAX_CHARS


# ----- errors -----


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_parquet('/etc/hosts')",
        "SELECT * FROM data JOIN read_csv('/etc/passwd') ON true",
        "DROP TABLE data",
        "SELECT 1; SELECT 2",
        "COPY data TO '/tmp/x.csv'",
    ],
)
async def test_refused_sql_is_a_tool_error_with_the_api_detail(sql):
    api = rest("POST", "/files/sales/query", json={"sql": sql})
    assert api.status_code == 422, api.text
    async with http_client() as client:
        assert await call_error(client, "query", {"sql": sql, "name": "sales"}) == api.json()["detail"]


async def test_mistakes_are_tool_errors_with_the_api_detail():
    async with http_client() as client:
        missing = rest("GET", "/files/nope").json()["detail"]
        assert await call_error(client, "describe_file", {"name": "nope"}) == missing
        assert await call_error(client, "read_rows", {"name": "nope"}) == missing
        bad_session = rest("GET", "/files/active/not-a-uuid").json()["detail"]
        assert await call_error(client, "get_active_file", {"session_id": "not-a-uuid"}) == bad_session
        past = await call_error(client, "read_rows", {"name": "sales", "offset": SALES_ROWS})
        assert "past the end" in past and str(SALES_ROWS) in past
        assert "0 or more" in await call_error(client, "read_rows", {"name": "sales", "offset": -1})
        assert "no column" in await call_error(client, "read_rows", {"name": "sales", "columns": ["nope"]})
        assert "exactly one" in await call_error(client, "query", {"sql": "SELECT 1"})
        invalid = rest("POST", "/files/sales/query", json={"sql": "SELECT nope FROM data"}).json()["detail"]
        assert await call_error(client, "query", {"sql": "SELECT nope FROM data", "name": "sales"}) == invalid


async def test_another_users_file_is_invisible_to_every_tool_and_resource():
    session = str(uuid.uuid4())
    async with http_client(ALICE) as client:
        names = [f["name"] for f in (await call_ok(client, "list_files", {"limit": 1000})).structured_content["files"]]
        assert "secret" not in names
        assert (await call_ok(client, "list_files", {"query": "secret"})).structured_content["files"] == []
        not_found = rest("GET", "/files/secret").json()["detail"]
        assert await call_error(client, "describe_file", {"name": "secret"}) == not_found
        assert await call_error(client, "read_rows", {"name": "secret"}) == not_found
        assert await call_error(client, "query", {"sql": "SELECT * FROM data", "name": "secret"}) == not_found
        assert await call_error(client, "set_active_file", {"session_id": session, "name": "secret"}) == not_found
        joined = rest("POST", "/files/sales/query", json={"sql": 'SELECT * FROM "secret"'}).json()["detail"]
        assert await call_error(client, "query", {"sql": 'SELECT * FROM "secret"', "name": "sales"}) == joined
        # Both have a `sales`: each sees their own.
        mine = (await call_ok(client, "describe_file", {"name": "sales"})).structured_content
        assert mine["file"]["columns"] == 4
        uris = [r.uri for r in (await client.list_resources()).resources]
        assert not any("secret" in u for u in uris)
        with pytest.raises(MCPError):
            await client.read_resource("file-service://files/secret/summary")
    # Bob's session is not Alice's.
    assert rest("POST", f"/files/active/{session}", BOB, json={"file_name": "secret"}).status_code == 200
    async with http_client(ALICE) as client:
        await call_error(client, "get_active_file", {"session_id": session})
    async with http_client(BOB) as client:
        bobs = (await call_ok(client, "describe_file", {"name": "sales"})).structured_content
        assert bobs["file"]["columns"] == 2


# ----- resources -----


@pytest.mark.parametrize("mode", MODES)
async def test_summaries_are_resources(mode):
    listed = rest("GET", "/files/").json()
    async with http_client(mode=mode) as client:
        resources = (await client.list_resources()).resources
        assert sorted(r.name for r in resources) == sorted(r["file_name"] for r in listed)
        by_name = {r.name: r for r in resources}
        notes = by_name["notes 2024"]
        assert notes.uri == "file-service://files/notes%202024/summary" and notes.mime_type == "text/markdown"
        read = await client.read_resource(notes.uri)
        assert read.contents[0].text == rest("GET", "/files/notes 2024").json()["summary"]
        assert read.contents[0].mime_type == "text/markdown"
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["file-service://files/{name}/summary"]


# ----- the HTTP door: tokens and origins -----


INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def raw_post(headers):
    with httpx2.Client(timeout=30) as c:
        return c.post(MCP_URL, json=INIT, headers={**ACCEPT, **headers})


def test_no_or_bad_token_is_401_with_the_api_error_body():
    for headers in [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic eDp5"}]:
        r = raw_post(headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        body = r.json()
        assert body["code"] == "unauthorized" and body["detail"]


async def test_a_client_with_a_bad_token_gets_nothing():
    with pytest.raises(BaseException) as failure:
        with anyio.fail_after(60):
            async with http_client("not-a-token", mode="legacy") as client:
                await client.list_tools()
    assert not isinstance(failure.value, TimeoutError), "the client hung instead of failing"


def test_a_foreign_origin_is_refused_and_the_own_origin_is_not():
    auth = {"Authorization": f"Bearer {ALICE}"}
    for origin in ["http://evil.example", "http://evil.example:" + BASE.rsplit(":", 1)[1], "null"]:
        r = raw_post({**auth, "Origin": origin})
        assert r.status_code == 403, (origin, r.text)
        assert r.json()["code"] == "forbidden"
    # Refused before the token is looked at.
    assert raw_post({"Origin": "http://evil.example"}).status_code == 403
    own = raw_post({**auth, "Origin": BASE})
    assert own.status_code == 200, own.text
    assert raw_post(auth).status_code == 200


def test_calls_are_counted_by_tool_and_outcome():
    with httpx2.Client(timeout=30) as c:
        text = c.get(BASE + "/metrics").text
    assert re.search(r'file_service_mcp_calls_total\{outcome="ok",tool="list_files"\} [1-9]', text), text[-3000:]
    assert re.search(r'file_service_mcp_calls_total\{outcome="invalid",tool="query"\} [1-9]', text)
    assert 'route="/mcp"' in text


# ----- the stdio bridge -----


@pytest.mark.parametrize("mode", MODES)
async def test_the_stdio_bridge_carries_every_tool(mode):
    async with bridge_client("--url", BASE, "--token", ALICE, mode=mode) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        data = (await call_ok(client, "describe_file", {"name": "sales"})).structured_content
        assert data["summary"] == rest("GET", "/files/sales").json()["summary"]
        page = (await call_ok(client, "read_rows", {"name": "sales", "offset": 1200, "limit": 50})).structured_content
        assert page["row_count"] == SALES_ROWS - 1200 and page["next_offset"] is None
        refused = "SELECT * FROM read_csv('/etc/passwd')"
        detail = rest("POST", "/files/sales/query", json={"sql": refused}).json()["detail"]
        assert await call_error(client, "query", {"sql": refused, "name": "sales"}) == detail
        session = str(uuid.uuid4())
        await call_ok(client, "set_active_file", {"session_id": session, "name": "regions"})
        assert rest("GET", f"/files/active/{session}").json()["file_name"] == "regions"
        read = await client.read_resource("file-service://files/sales/summary")
        assert read.contents[0].text == data["summary"]


async def test_the_stdio_bridge_signs_a_token_with_the_local_secret():
    env = {"SECRET_KEY": os.environ["SECRET_KEY"]}
    async with bridge_client("--url", MCP_URL, "--user", "2", env=env) as client:
        names = [f["name"] for f in (await call_ok(client, "list_files", {})).structured_content["files"]]
        assert "secret" in names and "notes 2024" not in names


async def test_the_stdio_bridge_says_why_a_bad_token_fails():
    with pytest.raises(BaseException) as failure:
        with anyio.fail_after(60):
            async with bridge_client("--url", MCP_URL, "--token", "not-a-token") as client:
                await client.list_tools()
    assert "401" in repr(failure.value) or "nauthorized" in repr(failure.value), repr(failure.value)


# ----- the MCP Inspector's CLI -----


def inspector(*args, status=0):
    """The Inspector CLI's JSON answer; it exits 5 for a tool result with isError."""
    done = subprocess.run(
        [INSPECTOR, "--cli", *args], capture_output=True, text=True, timeout=120, cwd=WORK,
        env={**os.environ, "MCP_CATALOG_PATH": os.path.join(WORK, "inspector-catalog.json")},
    )
    assert done.returncode == status, (done.stdout[-2000:], done.stderr[-2000:])
    return json.loads(done.stdout)


HTTP = [MCP_URL, "--transport", "http", "--header", f"Authorization: Bearer {ALICE}"]


def test_the_inspector_lists_the_tools_with_portable_schemas():
    listed = inspector(*HTTP, "--method", "tools/list", "--strict")
    assert {t["name"] for t in listed["tools"]} == TOOLS
    for tool in listed["tools"]:
        assert tool["annotations"]["readOnlyHint"] is (tool["name"] != "set_active_file")
        assert tool["outputSchema"]["type"] == "object"


def test_the_inspector_calls_tools_and_reads_resources():
    described = inspector(*HTTP, "--method", "tools/call", "--tool-name", "describe_file", "--tool-arg", "name=sales")
    assert described.get("isError") in (None, False), described
    assert described["structuredContent"]["summary"] == rest("GET", "/files/sales").json()["summary"]
    rows = inspector(*HTTP, "--method", "tools/call", "--tool-name", "read_rows", "--tool-arg", "name=sales", "offset=1230")
    assert rows["structuredContent"]["row_count"] == 4
    refused = inspector(*HTTP, "--method", "tools/call", "--tool-name", "query", "--tool-arg",
                        "sql=SELECT * FROM read_csv('/etc/passwd')", "name=sales", status=5)
    assert refused["isError"] is True
    api = rest("POST", "/files/sales/query", json={"sql": "SELECT * FROM read_csv('/etc/passwd')"}).json()
    assert refused["content"][0]["text"] == api["detail"]
    resources = inspector(*HTTP, "--method", "resources/list")
    assert "file-service://files/sales/summary" in [r["uri"] for r in resources["resources"]]


def test_the_inspector_through_the_stdio_bridge():
    bridge = ["--", BIN, "mcp", "--url", MCP_URL, "--token", ALICE]
    listed = inspector("--method", "tools/list", *bridge)
    assert {t["name"] for t in listed["tools"]} == TOOLS
    called = inspector("--method", "tools/call", "--tool-name", "list_files", "--tool-arg", "query=regions", *bridge)
    assert [f["name"] for f in called["structuredContent"]["files"]] == ["regions"]
