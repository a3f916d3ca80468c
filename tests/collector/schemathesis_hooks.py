"""schemathesis hooks for tests/collector/test_openapi.py, loaded by `st run` through SCHEMATHESIS_HOOKS.

An operation may answer a schema-valid request with 400 only for a rule its schemas cannot state
(a range's end before its start, a cursor this collector never gave): it lists those codes under
`x-rule-errors`. The test lets such operations answer 400 to positive data in schemathesis's own
`positive_data_acceptance`, and this check then holds each such 400 to the operation's list.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.check
def rule_errors_are_declared(ctx: Any, response: Any, case: Any) -> bool | None:
    """A schema-valid request answered 400 must carry one of the operation's `x-rule-errors` codes."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return None
    rules = case.operation.definition.raw.get("x-rule-errors")
    if not rules:
        return None  # positive_data_acceptance itself refuses this 400
    try:
        code = json.loads(response.content).get("error")
    except ValueError:
        code = None
    if code not in rules:
        raise AssertionError(
            f"a schema-valid request was refused with 400 {code!r}, which is not among this operation's "
            f"x-rule-errors ({', '.join(rules)}): the schema is looser than the server"
        )
    return None
