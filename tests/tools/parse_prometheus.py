#!/usr/bin/env python3
"""tests/tools/parse_prometheus.py < FILE

Parses Prometheus text exposition (format 0.0.4, what node_exporter's textfile collector reads)
from stdin with the official Python client, `prometheus_client.parser.text_string_to_metric_families`,
and prints the metric families as JSON on stdout, in input order:

  [{"name": "byok_keys", "type": "gauge", "help": "...",
    "samples": [{"name": "byok_keys", "labels": {"class": "ok"}, "value": 3.0}]}]

Names are as written in the input: prometheus_client renames counters internally (family
`x_total` becomes `x`, and the samples of a counter family `x` become `x_total`); that is undone
here. `type` is the word of the TYPE line (counter, gauge, summary, histogram or untyped); `help`
is the HELP text with its escapes (\\\\ and \\n) resolved; `value` is always a float.

The parser is lax (its own docstring says so), so the input is held to these rules as well; any
break of one, and any exception of the parser, is a message on stderr and exit status 1, with
nothing on stdout:

  - the input is UTF-8, not empty, and ends with a newline (node_exporter requires it); lines
    end with \\n alone (no \\r);
  - every family has exactly one HELP line, with a non-empty text, and exactly one TYPE line,
    both naming it as its samples do, before its samples; a sample line whose name belongs to
    no TYPE line before it (a misspelt name, or samples before their HELP/TYPE) counts as a
    family without them;
  - a family appears once: its HELP, TYPE and samples are not split by another family;
  - TYPE is one of counter, gauge, summary, histogram, untyped (the 0.0.4 types; info,
    stateset and gaugehistogram are OpenMetrics only);
  - metric and label names are the classic ones ([a-zA-Z_:][a-zA-Z0-9_:]* and
    [a-zA-Z_][a-zA-Z0-9_]*, no quoted UTF-8 names, no label names starting with __), and every
    sample line starts with its metric name;
  - every value is finite: NaN and +-Inf are refused (byok exports counts, ages and timestamps,
    so a non-finite value is a bug, and strict JSON cannot hold it);
  - no sample has a timestamp (node_exporter's textfile collector refuses them);
  - no series (sample name and label set) appears twice (node_exporter refuses the whole file).

A family with HELP and TYPE but no sample is allowed and printed with `"samples": []`
(node_exporter drops such a family silently). Exit status 2 is a usage error. Run it with the
LocalStack venv's Python (scripts/testenv installs prometheus_client there), which
`scripts/testenv up` exports as BYOK_LOCALSTACK_PYTHON.
"""

import json
import math
import re
import sys

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.validation import enable_legacy_validation

TYPES = ("counter", "gauge", "summary", "histogram", "untyped")
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class Invalid(Exception):
    pass


def headers(text):
    """HELP and TYPE lines by metric name: {name: {"HELP": [texts], "TYPE": [types]}}; also
    checks that every sample line starts with a classic metric name and that no HELP or TYPE
    line comes after a sample of its family."""
    found, current, samples_seen = {}, None, False
    for number, line in enumerate(text.split("\n")[:-1], start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[0] == "#" and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if name == current and samples_seen:
                    raise Invalid(f"line {number}: {parts[1]} line for {name} after its samples")
                if name != current:
                    current, samples_seen = name, False
                entry = found.setdefault(name, {"HELP": [], "TYPE": []})
                entry[parts[1]].append(parts[3] if len(parts) == 4 else "")
            continue
        samples_seen = True
        name = METRIC_NAME.match(line)
        if not name or (name.end() < len(line) and line[name.end()] not in "{ \t"):
            raise Invalid(f"line {number}: a sample line must start with a metric name: {line!r}")
    return found


def parse(text):
    if not text:
        raise Invalid("the input is empty")
    if not text.endswith("\n"):
        raise Invalid("the input does not end with a newline (node_exporter requires one)")
    if "\r" in text:
        raise Invalid("the input has a carriage return (\\r): lines must end with \\n alone")
    declared = headers(text)
    enable_legacy_validation()
    families, seen = [], set()
    for family in text_string_to_metric_families(text):
        name, samples = family.name, list(family.samples)
        if family.type == "counter":
            # prometheus_client's renaming: TYPE x_total -> family x; TYPE x -> samples x_total.
            written = [n for n in (name + "_total", name)
                       if "counter" in declared.get(n, {}).get("TYPE", [])]
            if len(written) != 1:
                raise Invalid(f"counter family {name}: cannot tell which TYPE line it comes from"
                              f" ({' and '.join(written) or 'none'})")
            if written[0] == name:
                samples = [s._replace(name=s.name.removesuffix("_total")) for s in samples]
            name = written[0]
        if name in seen:
            raise Invalid(f"metric family {name} appears twice (its lines are split by another"
                          " family, or its samples come before its HELP or TYPE)")
        seen.add(name)
        if name not in declared:
            raise Invalid(f"metric family {name} has no HELP and no TYPE line (a misspelt sample"
                          " name?)")
        entry = declared[name]
        for kind in ("HELP", "TYPE"):
            if not entry[kind]:
                raise Invalid(f"metric family {name} has no {kind} line")
            if len(entry[kind]) > 1:
                raise Invalid(f"metric family {name} has {len(entry[kind])} {kind} lines")
        if not family.documentation.strip():
            raise Invalid(f"metric family {name}: its HELP text is empty")
        typ = entry["TYPE"][0]
        if typ not in TYPES:
            raise Invalid(f"metric family {name}: TYPE {typ!r}, expected one of {', '.join(TYPES)}")
        out, series = [], set()
        for s in samples:
            where = f"sample {s.name}{json.dumps(s.labels, sort_keys=True)}"
            if not METRIC_NAME.fullmatch(s.name):
                raise Invalid(f"{where}: not a classic metric name")
            for label in s.labels:
                if not LABEL_NAME.fullmatch(label) or label.startswith("__"):
                    raise Invalid(f"{where}: label name {label!r} is not allowed")
            if s.timestamp is not None:
                raise Invalid(f"{where}: has a timestamp (node_exporter's textfile collector"
                              " refuses them)")
            value = float(s.value)
            if not math.isfinite(value):
                raise Invalid(f"{where}: value {s.value} is not finite")
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in series:
                raise Invalid(f"{where}: the same series appears twice")
            series.add(key)
            out.append({"name": s.name, "labels": dict(s.labels), "value": value})
        families.append({"name": name, "type": typ, "help": family.documentation,
                         "samples": out})
    return families


def main(argv):
    if argv:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    try:
        text = sys.stdin.buffer.read().decode("utf-8")
        families = parse(text)
    except UnicodeDecodeError as e:
        print(f"parse_prometheus: the input is not UTF-8: {e}", file=sys.stderr)
        return 1
    except Invalid as e:
        print(f"parse_prometheus: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # the parser's own errors: ValueError, IndexError, ...
        print(f"parse_prometheus: prometheus_client could not parse the input:"
              f" {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    json.dump(families, sys.stdout, indent=1, allow_nan=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
