"""CloudFormation custom resource plumbing: send the result to the pre-signed ResponseURL.

A custom resource must ALWAYS answer, or the stack waits an hour; so the handler catches every
error and reports it as FAILED with a reason CloudFormation shows in its events.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

MAX_REASON = 3000  # the whole response must stay under 4 KB


def respond(
    event: dict[str, Any],
    status: str,
    reason: str = "",
    physical_id: str | None = None,
    data: dict[str, Any] | None = None,
    timeout_s: float = 30,
) -> dict[str, Any]:
    """PUT the response to event['ResponseURL']; returns the body sent (also when there is no URL)."""
    body = {
        "Status": status,
        "Reason": reason[:MAX_REASON] or status,
        "PhysicalResourceId": physical_id
        or event.get("PhysicalResourceId")
        or event.get("LogicalResourceId", "sql"),
        "StackId": event.get("StackId", ""),
        "RequestId": event.get("RequestId", ""),
        "LogicalResourceId": event.get("LogicalResourceId", ""),
        "Data": data or {},
    }
    url = event.get("ResponseURL")
    if url:
        payload = json.dumps(body).encode()
        request = urllib.request.Request(
            url, data=payload, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(payload))}
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
    return body
