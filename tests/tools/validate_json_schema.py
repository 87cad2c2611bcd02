#!/usr/bin/env python3
"""tests/tools/validate_json_schema.py SCHEMA < DOCUMENT

Validates the JSON document on stdin against the JSON Schema (draft 2020-12) file SCHEMA with
the `jsonschema` package, the reference Python implementation. Prints nothing and exits 0 when
the document is valid; prints every violation (its path in the document and the message) on
stderr and exits 1 when it is not; exits 2 on a usage error, an unreadable schema or a document
that is not JSON. Run it with the LocalStack venv's Python (scripts/testenv installs jsonschema
there), which `scripts/testenv up` exports as BYOK_LOCALSTACK_PYTHON.
"""

import json
import sys

import jsonschema


def main(argv):
    if len(argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(schema)
        document = json.load(sys.stdin)
    except (OSError, ValueError, jsonschema.SchemaError) as e:
        print(f"validate_json_schema: {e}", file=sys.stderr)
        return 2
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    for e in errors:
        path = "/".join(str(p) for p in e.absolute_path) or "(document)"
        print(f"{path}: {e.message}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
