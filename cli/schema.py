"""Print the JSON schema of `unmute status --json` (docs/unmute-status.schema.json):

python -m cli.schema > docs/unmute-status.schema.json
"""

from __future__ import annotations

import json

from cli.model import StatusReport


def status_schema() -> dict[str, object]:
    """The schema, naming its draft (pydantic writes 2020-12)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **StatusReport.model_json_schema()}


if __name__ == "__main__":
    print(json.dumps(status_schema(), indent=2))
