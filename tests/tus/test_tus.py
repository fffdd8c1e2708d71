"""Resumable uploads (tus 1.0.0 at /api/v1/uploads/) driven by a real client against a running binary.

tuspy, the official Python tus client, creates uploads, sends them in chunks, resumes them with
a new uploader from the server's offset and sends checksums; what it makes is checked against
what the REST API says of the file (bytes, sha256, rows, summary, active file) and what the
same bytes give through the multipart route. What tuspy cannot send (termination, OPTIONS,
malformed requests) goes out as plain HTTP requests. tests/tus/run starts the server and sets
the TUS_TEST_* variables.
"""

import base64
import email.utils
import hashlib
import io
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError, TusUploadFailed
from tusclient.uploader import Uploader

BIN = os.environ["TUS_TEST_BIN"]
BASE = os.environ["TUS_TEST_BASE"]
STORAGE = os.environ["TUS_TEST_STORAGE"]
MAX_UPLOAD_BYTES = int(os.environ["TUS_TEST_MAX_UPLOAD_BYTES"])
TUS_URL = BASE + "/api/v1/uploads/"
FORMATS = Path(__file__).resolve().parent.parent / "fixtures" / "formats"
EXPECTED = json.loads((FORMATS / "expected.json").read_text())
KIB = 1024
EXPIRES_SECONDS = 86400  # UPLOAD_EXPIRES_SECONDS' default; tests/tus/run leaves it unset


def token(user):
    return subprocess.run([BIN, "token", "--user", str(user)], check=True, capture_output=True, text=True).stdout.strip()


ALICE = token(1)
BOB = token(2)


# ----- helpers -----


def rest(method, path, tok=ALICE, **kwargs):
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    return requests.request(method, BASE + "/api/v1" + path, headers=headers, timeout=120, **kwargs)


def tus_raw(method, url, tok=ALICE, tus=True, headers=None, **kwargs):
    """A plain HTTP request to a tus URL (what tuspy has no call for)."""
    hdrs = {}
    if tok:
        hdrs["Authorization"] = f"Bearer {tok}"
    if tus:
        hdrs["Tus-Resumable"] = "1.0.0"
    hdrs.update(headers or {})
    return requests.request(method, url, headers=hdrs, timeout=120, **kwargs)


def client(tok=ALICE, url=TUS_URL):
    return TusClient(url, headers={"Authorization": f"Bearer {tok}"} if tok else {})


def meta(name, session=None, filename="data.csv", description="uploaded with tuspy"):
    fields = {"file_name": name, "session_id": session or str(uuid.uuid4())}
    if description is not None:
        fields["description"] = description
    fields["filename"] = filename
    fields["filetype"] = "text/csv"  # ignored by the server, as tus clients often send it
    return fields


def encode_metadata(fields):
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


def upload_id(url):
    return url.rstrip("/").rsplit("/", 1)[1]


def same_id(a, b):
    return uuid.UUID(str(a)) == uuid.UUID(str(b))


def multipart(name, data, filename, session=None, tok=ALICE, description="uploaded as multipart"):
    return rest(
        "POST",
        "/files/",
        tok,
        data={"file_name": name, "session_id": session or str(uuid.uuid4()), "description": description},
        files={"file": (filename, data, "application/octet-stream")},
    )


def parts_of(uid):
    """The stored chunk objects of one upload: hidden (a leading dot), named with its id
    and offset (the contract says `.tus-{id}-{offset:020}-{token}`; the server writes
    `.part-{id}-{offset:020}-{token}`)."""
    want = uuid.UUID(uid).hex
    found = []
    for _, _, names in os.walk(STORAGE):
        found += [n for n in names if n.startswith(".") and want in n.replace("-", "")]
    return sorted(found)


def head(url, tok=ALICE):
    """The server's offset of an upload, as tuspy reads it: a new uploader on its URL (a HEAD)."""
    return client(tok).uploader(file_stream=io.BytesIO(b"x"), url=url).offset


def status_of(uid, tok=ALICE):
    return rest("GET", f"/uploads/{uid}", tok)


def error_of(failure):
    """The JSON error body of a tuspy exception."""
    content = failure.response_content
    return json.loads(content.decode() if isinstance(content, bytes) else content)


def csv_rows(rows):
    lines = ["id,region,amount,day,item"]
    for i in range(rows):
        lines.append(f"{i},{['north', 'south', 'east', 'west'][i % 4]},{i * 0.25},2024-{1 + i % 12:02d}-{1 + i % 28:02d},item-{i * 7919 % 100003}")
    return ("\n".join(lines) + "\n").encode()


BIG_ROWS = 26_000
BIG = csv_rows(BIG_ROWS)  # about 1 MB, not a multiple of the chunk size


def test_the_generated_csv_is_a_megabyte_of_uneven_chunks():
    assert 900 * KIB < len(BIG) < 1400 * KIB and len(BIG) % (64 * KIB) != 0


# ----- 1. a CSV in small chunks -----


def test_a_csv_in_64_kib_chunks_is_stored_byte_exact_and_made_active():
    session = str(uuid.uuid4())
    name = "tus big"
    up = client().uploader(file_stream=io.BytesIO(BIG), chunk_size=64 * KIB, metadata=meta(name, session, "big.csv", "a megabyte in chunks"))
    up.upload()
    assert up.offset == len(BIG)
    assert up.url.startswith(TUS_URL), up.url
    uid = upload_id(up.url)

    got = rest("GET", f"/files/{name}")
    assert got.status_code == 200, got.text
    record = got.json()
    content = rest("GET", f"/files/{name}/content")
    assert content.status_code == 200, content.text
    assert content.content == BIG
    assert record["sha256"] == hashlib.sha256(BIG).hexdigest()
    assert record["size_bytes"] == len(BIG)
    assert record["row_count"] == BIG_ROWS and record["column_count"] == 5
    assert record["format"] == "csv" and record["description"] == "a megabyte in chunks"
    assert record["summary"].startswith(f"The dataset has **{BIG_ROWS} rows** and **5 columns**.")
    assert same_id(record["id"], uid), (record["id"], uid)  # the record takes the upload's id

    active = rest("GET", f"/files/active/{session}")
    assert active.status_code == 200, active.text
    assert active.json()["file_name"] == name and same_id(active.json()["id"], uid)
    assert name in [f["file_name"] for f in rest("GET", "/files/").json()]

    state = status_of(uid)
    assert state.status_code == 200, state.text
    state = state.json()
    assert state["state"] == "done", state
    assert same_id(state["id"], uid)
    assert state["offset"] == state["length"] == len(BIG)
    assert state["file_name"] == name and same_id(state["session_id"], session)
    assert state["file"] == record
    assert "error" not in state or state["error"] is None

    # HEAD once complete: offset = length, under either spelling of the id.
    assert head(up.url) == len(BIG)
    other = uuid.UUID(uid).hex if "-" in uid else str(uuid.UUID(uid))
    h = tus_raw("HEAD", TUS_URL + other)
    assert h.status_code == 200 and h.headers["Upload-Offset"] == str(len(BIG)), (h.status_code, dict(h.headers))
    # The chunks were read back into the file and removed.
    assert parts_of(uid) == []

    # A DELETE of a done upload forgets the upload, never the file.
    gone = tus_raw("DELETE", up.url)
    assert gone.status_code == 204, gone.text
    assert gone.headers.get("Tus-Resumable") == "1.0.0"
    assert status_of(uid).status_code == 404
    assert rest("GET", f"/files/{name}").json()["sha256"] == record["sha256"]
    assert rest("GET", f"/files/{name}/content").content == BIG


# ----- 2. resume with a new uploader -----


def test_a_new_uploader_resumes_from_the_servers_offset():
    session = str(uuid.uuid4())
    name = "tus resumed"
    body = csv_rows(9_000)
    chunk = 32 * KIB
    fields = meta(name, session, "resumed.csv", "sent in two goes")
    first = client().uploader(file_stream=io.BytesIO(body), chunk_size=chunk, metadata=fields)
    for _ in range(3):
        first.upload_chunk()
    assert first.offset == 3 * chunk
    uid = upload_id(first.url)

    # Half-way: the upload says so, no file yet, the three chunks are stored.
    state = status_of(uid).json()
    assert state["state"] == "receiving", state
    assert state["offset"] == 3 * chunk and state["length"] == len(body)
    assert state["file_name"] == name and same_id(state["session_id"], session)
    assert state.get("file") is None
    assert rest("GET", f"/files/{name}").status_code == 404
    assert rest("GET", f"/files/active/{session}").status_code == 404
    assert len(parts_of(uid)) == 3, parts_of(uid)
    h = tus_raw("HEAD", first.url)
    assert h.status_code == 200
    assert h.headers["Upload-Offset"] == str(3 * chunk) and h.headers["Upload-Length"] == str(len(body))
    assert h.headers["Upload-Metadata"] == ",".join(first.encode_metadata())
    assert "no-store" in h.headers.get("Cache-Control", "")
    assert h.headers.get("Tus-Resumable") == "1.0.0"

    # A new uploader on the URL, over a stream whose sent part is blanked out: only the
    # server's copy of the first three chunks can make the file right. Another chunk size.
    blanked = b"\0" * (3 * chunk) + body[3 * chunk:]
    second = client().uploader(file_stream=io.BytesIO(blanked), url=first.url, chunk_size=50_000)
    assert second.offset == 3 * chunk
    second.upload_chunk()
    assert second.offset == 3 * chunk + 50_000

    # The first uploader, behind the server, is refused and changes nothing.
    with pytest.raises(TusUploadFailed) as stale:
        first.upload_chunk()
    assert stale.value.status_code == 409
    assert error_of(stale.value)["code"] == "offset_mismatch"
    assert head(first.url) == 3 * chunk + 50_000

    second.upload()
    assert second.offset == len(body)
    record = rest("GET", f"/files/{name}").json()
    assert rest("GET", f"/files/{name}/content").content == body
    assert record["sha256"] == hashlib.sha256(body).hexdigest() and record["row_count"] == 9_000
    assert rest("GET", f"/files/active/{session}").json()["file_name"] == name
    assert status_of(uid).json()["state"] == "done"
    assert parts_of(uid) == []

    # A PATCH on the completed upload: offset == length, so 409.
    with pytest.raises(TusUploadFailed) as late:
        first.upload_chunk()
    assert late.value.status_code == 409
    assert rest("GET", f"/files/{name}").json()["sha256"] == record["sha256"]


# ----- 3. checksums -----


class Sha256Uploader(Uploader):
    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


class WrongSha1Uploader(Uploader):
    """tuspy's own uploader with a sha1 of the wrong bytes: every chunk's checksum is off."""

    CHECKSUM_ALGORITHM_PAIR = ("sha1", lambda chunk: hashlib.sha1(chunk + b"!"))


@pytest.mark.parametrize("kind", [Uploader, Sha256Uploader], ids=["sha1", "sha256"])
def test_chunks_with_checksums_are_accepted(kind):
    name = f"tus checked {kind.CHECKSUM_ALGORITHM_PAIR[0]}"
    body = csv_rows(6_000)
    # The base URL without its trailing slash works too.
    up = kind(file_stream=io.BytesIO(body), chunk_size=40 * KIB, metadata=meta(name, filename="checked.CSV"),
              upload_checksum=True, client=client(url=BASE + "/api/v1/uploads"))
    up.upload()
    sent = up.request._request_headers["upload-checksum"]
    assert sent.split(" ")[0] == kind.CHECKSUM_ALGORITHM_PAIR[0], sent  # tuspy did send them
    assert up.offset == len(body)
    record = rest("GET", f"/files/{name}").json()
    assert record["sha256"] == hashlib.sha256(body).hexdigest() and record["row_count"] == 6_000
    assert rest("GET", f"/files/{name}/content").content == body


def test_a_chunk_with_a_wrong_checksum_is_dropped_and_the_upload_goes_on():
    name = "tus bad checksum"
    body = csv_rows(3_000)
    chunk = 16 * KIB
    good = client().uploader(file_stream=io.BytesIO(body), chunk_size=chunk, metadata=meta(name), upload_checksum=True)
    good.upload_chunk()
    bad = WrongSha1Uploader(file_stream=io.BytesIO(body), url=good.url, chunk_size=chunk, upload_checksum=True, client=client())
    assert bad.offset == chunk
    with pytest.raises(TusUploadFailed) as failure:
        bad.upload_chunk()
    assert failure.value.status_code == 460
    assert error_of(failure.value)["code"] == "checksum_mismatch"
    assert head(good.url) == chunk
    assert len(parts_of(upload_id(good.url))) == 1
    # An algorithm the server does not offer, and a malformed header: 400, nothing kept.
    for value in ["md5 " + base64.b64encode(hashlib.md5(body[chunk:2 * chunk]).digest()).decode(), "sha1", "sha1 !!!"]:
        r = tus_raw("PATCH", good.url, headers={"Content-Type": "application/offset+octet-stream",
                                                "Upload-Offset": str(chunk), "Upload-Checksum": value},
                    data=body[chunk:2 * chunk])
        assert r.status_code == 400, (value, r.status_code, r.text)
        assert r.json()["code"] == "unsupported_checksum", (value, r.text)
    assert head(good.url) == chunk
    good.upload()
    assert rest("GET", f"/files/{name}/content").content == body


# ----- 4. other formats: tus and multipart agree -----


@pytest.mark.parametrize("fixture", ["many_groups.parquet", "book.xlsx"])
def test_a_binary_format_through_tus_is_what_multipart_makes_of_it(fixture):
    data = (FORMATS / fixture).read_bytes()
    stem = fixture.split(".")[0]
    by_form = multipart(f"form {stem}", data, fixture, description="the same bytes")
    assert by_form.status_code == 201, by_form.text
    session = str(uuid.uuid4())
    name = f"tus {stem}"
    up = client().uploader(file_stream=io.BytesIO(data), chunk_size=max(len(data) // 5, 1024),
                           metadata=meta(name, session, fixture, "the same bytes"))
    up.upload()
    assert up.offset == len(data)
    by_tus = rest("GET", f"/files/{name}")
    assert by_tus.status_code == 200, by_tus.text
    form, tus = by_form.json(), by_tus.json()
    for key in ["summary", "row_count", "column_count", "format", "sha256", "size_bytes", "description"]:
        assert tus[key] == form[key], key
    assert tus["row_count"] == EXPECTED[fixture]["rows"]
    assert tus["column_count"] == len(EXPECTED[fixture]["columns"])
    assert tus["sha256"] == hashlib.sha256(data).hexdigest()
    assert rest("GET", f"/files/{name}/content").content == data
    assert rest("GET", f"/files/{name}/profile").json() == rest("GET", f"/files/form {stem}/profile").json()
    assert rest("GET", f"/files/active/{session}").json()["file_name"] == name


def test_bytes_that_do_not_parse_fail_the_upload_as_multipart_refuses_them():
    data = (FORMATS / "encrypted.parquet").read_bytes()
    form = multipart("form encrypted", data, "encrypted.parquet")
    assert form.status_code == 422, form.text
    session = str(uuid.uuid4())
    up = client().uploader(file_stream=io.BytesIO(data), chunk_size=max(len(data) // 3, 256),
                           metadata=meta("tus encrypted", session, "encrypted.parquet"))
    with pytest.raises(TusUploadFailed) as failure:
        up.upload()
    assert failure.value.status_code == form.status_code
    assert error_of(failure.value) == form.json()
    uid = upload_id(up.url)
    state = status_of(uid).json()
    assert state["state"] == "failed", state
    assert state.get("file") is None
    assert state["error"]["code"] == form.json()["code"] and state["error"]["detail"] == form.json()["detail"], state
    assert rest("GET", "/files/tus encrypted").status_code == 404
    assert rest("GET", f"/files/active/{session}").status_code == 404
    assert parts_of(uid) == []
    assert head(up.url) == len(data)  # complete, though failed: offset = length


# ----- 5. metadata refused at creation -----


def test_refused_metadata_is_a_client_error_with_the_status_and_leaves_nothing():
    taken = multipart("tus taken", b"a,b\n1,2\n", "taken.csv")
    assert taken.status_code == 201, taken.text
    cases = [
        (meta("tus taken"), 409, "conflict"),
        (meta("tus free a", session="not-a-uuid"), 422, "invalid_session_id"),
        (meta("tus free b", filename="free.exe"), 422, "unsupported_extension"),
        (meta("tus free c", description=None), 422, "missing_field"),
        ({"file_name": "tus free d", "session_id": str(uuid.uuid4()), "description": "no filename"}, 422, "missing_filename"),
        (meta("bad/name"), 422, "invalid_file_name"),
    ]
    for fields, status, code in cases:
        up = client().uploader(file_stream=io.BytesIO(b"a,b\n3,4\n"), chunk_size=4, metadata=fields)
        with pytest.raises(TusCommunicationError) as failure:
            up.upload()
        assert failure.value.status_code == status, (fields, failure.value.status_code, failure.value.response_content)
        assert error_of(failure.value)["code"] == code, (fields, failure.value.response_content)
        assert up.url is None
    # Nothing was claimed or changed: the taken file is as it was, the other names are free.
    assert rest("GET", "/files/tus taken").json()["sha256"] == taken.json()["sha256"]
    for name in ["tus free a", "tus free b", "tus free c", "tus free d"]:
        r = multipart(name, b"a,b\n5,6\n", "free.csv")
        assert r.status_code == 201, (name, r.text)
    # Names are per user: Bob's `tus taken` goes through.
    bobs = client(BOB).uploader(file_stream=io.BytesIO(b"x,y\n1,2\n"), metadata=meta("tus taken"))
    bobs.upload()
    assert rest("GET", "/files/tus taken", BOB).json()["sha256"] == hashlib.sha256(b"x,y\n1,2\n").hexdigest()
    assert rest("GET", "/files/tus taken").json()["sha256"] == taken.json()["sha256"]


def test_an_empty_description_is_allowed_as_in_the_multipart_form():
    body = b"a,b\n1,2\n3,4\n"
    up = client().uploader(file_stream=io.BytesIO(body), chunk_size=5, metadata=meta("tus no words", description=""))
    up.upload()
    record = rest("GET", "/files/tus no words").json()
    assert record["description"] == "" and record["row_count"] == 2


def test_creation_refusals_of_the_headers():
    fields = encode_metadata(meta("tus headers"))
    cases = [
        ({"Upload-Metadata": fields}, 400, "invalid_upload_length"),
        ({"Upload-Length": "ten", "Upload-Metadata": fields}, 400, "invalid_upload_length"),
        ({"Upload-Defer-Length": "1", "Upload-Metadata": fields}, 400, "invalid_upload_length"),
        ({"Upload-Length": str(MAX_UPLOAD_BYTES + 1), "Upload-Metadata": fields}, 413, "payload_too_large"),
        ({"Upload-Length": "10", "Upload-Metadata": "file_name !!!not base64"}, 400, "invalid_metadata"),
    ]
    for headers, status, code in cases:
        r = tus_raw("POST", TUS_URL, headers=headers)
        assert r.status_code == status, (headers, r.status_code, r.text)
        assert r.json()["code"] == code, (headers, r.text)
        assert r.headers.get("Tus-Resumable") == "1.0.0"
        assert "Location" not in r.headers
    # Without Tus-Resumable: 412 and the version the server speaks.
    r = tus_raw("POST", TUS_URL, tus=False, headers={"Upload-Length": "10", "Upload-Metadata": fields})
    assert r.status_code == 412, r.text
    assert r.json()["code"] == "unsupported_tus_version" and r.headers.get("Tus-Version") == "1.0.0"
    # None of them took the name.
    up = client().uploader(file_stream=io.BytesIO(b"a\n1\n"), metadata=meta("tus headers"))
    up.upload()
    assert rest("GET", "/files/tus headers").status_code == 200


# ----- 6. other users and no token -----


def test_another_users_token_cannot_touch_an_upload_and_no_token_is_401():
    body = csv_rows(2_000)
    chunk = 16 * KIB
    up = client().uploader(file_stream=io.BytesIO(body), chunk_size=chunk, metadata=meta("tus private"))
    up.upload_chunk()
    uid = upload_id(up.url)
    patch = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": str(chunk)}

    # Bob: as if it did not exist.
    with pytest.raises(TusCommunicationError) as failure:
        head(up.url, BOB)
    assert failure.value.status_code == 404
    r = tus_raw("PATCH", up.url, BOB, headers=patch, data=body[chunk:2 * chunk])
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    r = tus_raw("DELETE", up.url, BOB)
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    assert status_of(uid, BOB).status_code == 404

    # No token, or a bad one: 401, still a tus answer.
    for tok in [None, "not-a-token"]:
        with pytest.raises(TusCommunicationError) as failure:
            head(up.url, tok)
        assert failure.value.status_code == 401
        for method, kwargs in [("PATCH", {"headers": patch, "data": body[chunk:2 * chunk]}), ("DELETE", {}),
                               ("POST", {"headers": {"Upload-Length": "5", "Upload-Metadata": encode_metadata(meta("tus anon"))}})]:
            url = TUS_URL if method == "POST" else up.url
            r = tus_raw(method, url, tok, **kwargs)
            assert r.status_code == 401, (tok, method, r.status_code, r.text)
            assert r.json()["code"] == "unauthorized"
            assert r.headers.get("Tus-Resumable") == "1.0.0", (method, dict(r.headers))
        assert status_of(uid, tok).status_code == 401
        with pytest.raises(TusCommunicationError) as failure:
            client(tok).uploader(file_stream=io.BytesIO(b"a\n1\n"), metadata=meta("tus anon")).upload()
        assert failure.value.status_code == 401

    # Alice's upload is untouched and finishes.
    assert head(up.url) == chunk
    up.upload()
    assert rest("GET", "/files/tus private/content").content == body
    assert rest("GET", "/files/tus private", BOB).status_code == 404
    assert rest("GET", "/files/tus anon").status_code == 404


# ----- 7. termination -----


def test_terminating_an_upload_removes_it_and_frees_the_name():
    body = csv_rows(3_000)
    chunk = 16 * KIB
    name = "tus terminated"
    up = client().uploader(file_stream=io.BytesIO(body), chunk_size=chunk, metadata=meta(name))
    up.upload_chunk()
    up.upload_chunk()
    uid = upload_id(up.url)
    assert len(parts_of(uid)) == 2

    # While it is unfinished its name is claimed: a second tus upload of it is refused.
    rival = client().uploader(file_stream=io.BytesIO(b"a\n1\n"), metadata=meta(name))
    with pytest.raises(TusCommunicationError) as failure:
        rival.upload()
    assert failure.value.status_code == 409 and error_of(failure.value)["code"] == "upload_in_progress"
    # The refusal says which upload holds the name, to go on with it or terminate it.
    assert error_of(failure.value)["upload"].rsplit("/", 1)[1] == uuid.UUID(uid).hex

    r = tus_raw("DELETE", up.url)
    assert r.status_code == 204, r.text
    assert r.headers.get("Tus-Resumable") == "1.0.0"
    with pytest.raises(TusCommunicationError) as failure:
        head(up.url)
    assert failure.value.status_code == 404
    with pytest.raises(TusUploadFailed) as failure:
        up.upload_chunk()
    assert failure.value.status_code == 404
    assert status_of(uid).status_code == 404
    assert tus_raw("DELETE", up.url).status_code == 404
    assert parts_of(uid) == []
    assert rest("GET", f"/files/{name}").status_code == 404

    # The name is free again.
    again = client().uploader(file_stream=io.BytesIO(b"a,b\n7,8\n"), chunk_size=3, metadata=meta(name))
    again.upload()
    assert rest("GET", f"/files/{name}/content").content == b"a,b\n7,8\n"


def test_terminating_a_fresh_upload_frees_the_name_for_the_multipart_route():
    name = "tus dropped"
    up = client().uploader(file_stream=io.BytesIO(b"a,b\n1,2\n"), chunk_size=4, metadata=meta(name))
    up.upload_chunk()
    assert tus_raw("DELETE", up.url).status_code == 204
    r = multipart(name, b"a,b\n1,2\n", "dropped.csv")
    assert r.status_code == 201, r.text


# ----- discovery, creation-with-upload, expiry, PATCH refusals -----


def test_options_says_what_the_server_supports_without_a_token():
    r = requests.options(TUS_URL, timeout=30)
    assert r.status_code == 204, r.text
    assert r.headers.get("Tus-Resumable") == "1.0.0"
    assert r.headers.get("Tus-Version") == "1.0.0"
    extensions = {e.strip() for e in r.headers["Tus-Extension"].split(",")}
    assert {"creation", "creation-with-upload", "termination", "expiration", "checksum"} <= extensions
    assert r.headers.get("Tus-Max-Size") == str(MAX_UPLOAD_BYTES)
    assert {a.strip() for a in r.headers["Tus-Checksum-Algorithm"].split(",")} == {"sha1", "sha256"}


def test_creation_with_upload_takes_the_first_chunk_or_the_whole_file():
    body = csv_rows(500)
    # The whole file in the POST: committed before the 201.
    session = str(uuid.uuid4())
    r = tus_raw("POST", TUS_URL, headers={"Upload-Length": str(len(body)),
                                          "Upload-Metadata": encode_metadata(meta("tus one go", session)),
                                          "Content-Type": "application/offset+octet-stream"}, data=body)
    assert r.status_code == 201, r.text
    assert r.headers["Location"].startswith("/api/v1/uploads/"), r.headers.get("Location")
    assert r.headers["Upload-Offset"] == str(len(body))
    assert rest("GET", "/files/tus one go/content").content == body
    assert rest("GET", f"/files/active/{session}").json()["file_name"] == "tus one go"
    # Part of it in the POST, the rest by tuspy.
    r = tus_raw("POST", TUS_URL, headers={"Upload-Length": str(len(body)),
                                          "Upload-Metadata": encode_metadata(meta("tus first part")),
                                          "Content-Type": "application/offset+octet-stream"}, data=body[:1000])
    assert r.status_code == 201, r.text
    assert r.headers["Upload-Offset"] == "1000"
    rest_of = client().uploader(file_stream=io.BytesIO(body), url=BASE + r.headers["Location"], chunk_size=4 * KIB)
    assert rest_of.offset == 1000
    rest_of.upload()
    assert rest("GET", "/files/tus first part/content").content == body


def test_an_upload_expires_a_day_after_its_last_patch():
    up = client().uploader(file_stream=io.BytesIO(csv_rows(100)), chunk_size=100, metadata=meta("tus expiring"))
    up.upload_chunk()
    h = tus_raw("HEAD", up.url)
    expires = email.utils.parsedate_to_datetime(h.headers["Upload-Expires"]).timestamp()
    assert abs(expires - (time.time() + EXPIRES_SECONDS)) < 120, h.headers["Upload-Expires"]
    state = status_of(upload_id(up.url)).json()
    assert state["expires_at"] and state["created_at"]


def test_patch_refusals():
    body = csv_rows(200)
    up = client().uploader(file_stream=io.BytesIO(body), chunk_size=100, metadata=meta("tus refusals"))
    up.upload_chunk()
    piece = body[100:200]
    cases = [
        ({"Content-Type": "application/octet-stream", "Upload-Offset": "100"}, 415, "unsupported_media_type"),
        ({"Content-Type": "application/offset+octet-stream"}, 400, "invalid_upload_offset"),
        ({"Content-Type": "application/offset+octet-stream", "Upload-Offset": "x"}, 400, "invalid_upload_offset"),
        ({"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}, 409, "offset_mismatch"),
    ]
    for headers, status, code in cases:
        r = tus_raw("PATCH", up.url, headers=headers, data=piece)
        assert r.status_code == status, (headers, r.status_code, r.text)
        assert r.json()["code"] == code, (headers, r.text)
        assert r.headers.get("Tus-Resumable") == "1.0.0"
    r = tus_raw("PATCH", up.url, tus=False, headers={"Content-Type": "application/offset+octet-stream", "Upload-Offset": "100"}, data=piece)
    assert r.status_code == 412 and r.json()["code"] == "unsupported_tus_version", r.text
    # Past Upload-Length: 413 and the chunk dropped.
    r = tus_raw("PATCH", up.url, headers={"Content-Type": "application/offset+octet-stream", "Upload-Offset": "100"},
                data=body[100:] + b"overflow")
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large", r.text
    assert head(up.url) == 100
    # X-HTTP-Method-Override: a POST that is a PATCH.
    r = tus_raw("POST", up.url, headers={"X-HTTP-Method-Override": "PATCH", "Content-Type": "application/offset+octet-stream",
                                         "Upload-Offset": "100"}, data=piece)
    assert r.status_code == 204, r.text
    assert r.headers["Upload-Offset"] == "200" and r.headers.get("Upload-Expires")
    up.offset = 200
    up.upload()
    assert rest("GET", "/files/tus refusals/content").content == body
