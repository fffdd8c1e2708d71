"""Schemathesis hooks for the contract run: values the OpenAPI document names but JSON Schema
cannot generate by itself.

- `format: file-name`: 1-128 characters (at most 200 bytes) of letters of any script,
  digits, space and `_ - . ( )`, not starting with `.` or a space. JSON Schema's
  ECMA-262 patterns cannot say "letters of any script" the same way in every engine.
- A tus request's body (`application/offset+octet-stream`): any bytes.
- The upload's `file` part (`encoding.contentType` text/csv or text/tab-separated-values):
  a real table, so a schema-valid upload is one the server can take.
"""

import csv
import io

import schemathesis
from hypothesis import strategies as st

LETTERS_AND_DIGITS = st.characters(categories=["Lu", "Ll", "Lt", "Lm", "Lo", "Nd"])


def _valid_name(name: str) -> bool:
    return 1 <= len(name) <= 128 and len(name.encode()) <= 200 and name[0] not in ". "


FILE_NAMES = st.text(
    alphabet=LETTERS_AND_DIGITS | st.sampled_from(list(" _-.()")), min_size=1, max_size=40
).filter(_valid_name)

schemathesis.openapi.format("file-name", FILE_NAMES)

def cells(punctuation: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-(10**6), 10**6).map(str),
        st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
        st.text(alphabet=LETTERS_AND_DIGITS | st.sampled_from(list(punctuation)), max_size=12),
        st.just(""),
    )


@st.composite
def tables(draw, delimiter: str) -> bytes:
    # Commas are quoted in CSV; a TSV sent as `.csv` keeps them out, as a real one would
    # not be ambiguous about its delimiter.
    cell = cells(" ,.-" if delimiter == "," else " .-")
    columns = draw(st.integers(1, 6))
    header = [f"col{i}" for i in range(columns)]
    rows = draw(st.lists(st.lists(cell, min_size=columns, max_size=columns), min_size=1, max_size=20))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


schemathesis.openapi.media_type("text/csv", tables(","))
# A tus PATCH's body: any bytes, sent as they are.
schemathesis.openapi.media_type("application/offset+octet-stream", st.binary(max_size=4096))
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
schemathesis.openapi.media_type("text/tab-separated-values", tables("\t"))
