"""The run state's small facts: timestamps and run ids."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from rulechef_trace._capture.state import new_run_id, utc_now, utc_stamp


@given(st.integers(min_value=0, max_value=253_402_300_799_999_999_999))  # to 9999-12-31
def test_utc_stamp_is_the_iso_text_datetime_gives_to_the_millisecond(nanoseconds: int) -> None:
    """The same text as ``datetime.isoformat(timespec="milliseconds")`` with a ``Z``."""
    seconds, rest = divmod(nanoseconds, 10**9)
    moment = datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=rest // 1000)
    expected = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert utc_stamp(nanoseconds) == expected


def test_utc_now_is_a_z_stamp_of_now() -> None:
    """``utc_now()`` reads like ``2026-12-02T21:52:46.991Z`` and is within a second of now."""
    text = utc_now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert abs((datetime.now(timezone.utc) - parsed).total_seconds()) < 1


def test_run_ids_are_random_version_4_uuids_in_hex() -> None:
    """32 hex digits, version 4, the RFC 4122 variant, never the same twice."""
    ids = {new_run_id() for _ in range(500)}
    assert len(ids) == 500
    for rid in ids:
        parsed = uuid.UUID(rid)
        assert parsed.hex == rid and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
