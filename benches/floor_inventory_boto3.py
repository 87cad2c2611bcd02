#!/usr/bin/env python3
"""benches/floor_inventory_boto3.py N_EXPECTED --concurrency C [--endpoint URL] [--region R]

The KMS floor for `byok inventory --concurrency C`: the KMS calls an inventory of the region
makes, from ONE warm boto3 client in one process, with the SDK's retries off, and nothing else
(no pacing, no classification, no JSON output). In this order:

  ListKeys                       Limit 1000, every page (Marker / NextMarker)
  ListAliases                    Limit 100, every page
  then per key, at most C calls in flight (a ThreadPoolExecutor of C workers, one task per key
  whose calls run one after another):
  DescribeKey                    the key's metadata; Origin decides what follows
  ListResourceTags               only for Origin EXTERNAL, every page
  ListKeyRotations               only for Origin EXTERNAL, IncludeKeyMaterial ALL_KEY_MATERIAL,
                                 every page. LocalStack answers it with an InternalFailure
                                 error, "not yet emulated" (HTTP 501 with LocalStack 2026.3.0;
                                 any 5xx is taken): that answer is accepted and counted, as byok
                                 records it and goes on; any other error fails the run.

The client is warmed first (one ListKeys with Limit 1, untimed): credentials, endpoint
resolution and the first pooled connection are set up before the clock starts. The pool holds
at least C connections, so the workers never wait for one. Prints one line,
`floor_ms <wall ms> keys <n listed> external <n external> calls <count>`, the wall time of the
timed calls only; `calls` counts every request, including the ones answered with the expected
error. A second line on stderr says how many pages each list took and how many ListKeyRotations
calls failed. Exits 1 if ListKeys listed fewer than N_EXPECTED keys. Endpoint and region default
to AWS_ENDPOINT_URL_KMS and AWS_REGION. Run it with the LocalStack venv's Python (boto3):
$HOME/.cache/byok/localstack-venv/bin/python, which scripts/testenv exports as
BYOK_LOCALSTACK_PYTHON.
"""

import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def main(argv):
    ap = argparse.ArgumentParser(prog="benches/floor_inventory_boto3.py")
    ap.add_argument("n_expected", type=int, help="fewest keys ListKeys must list")
    ap.add_argument("--concurrency", type=int, required=True, help="most calls in flight in the per-key phase")
    ap.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL_KMS"))
    ap.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    args = ap.parse_args(argv)
    if args.concurrency < 1:
        ap.error("--concurrency must be at least 1")

    kms = boto3.client(
        "kms",
        endpoint_url=args.endpoint,
        region_name=args.region,
        # One attempt per call, so LocalStack's error for ListKeyRotations is not retried. In a
        # botocore Config, total_max_attempts counts the first attempt; max_attempts counts
        # retries only (max_attempts 1 would still allow one retry).
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=max(args.concurrency, 10),
        ),
    )
    kms.list_keys(Limit=1)  # warm-up, untimed

    lock = threading.Lock()
    counts = {"calls": 0, "external": 0, "rotation_errors": 0}

    def count(field, n=1):
        with lock:
            counts[field] += n

    def pages(op, field, **params):
        """Every page of a KMS list operation; returns (items, pages)."""
        items, n, marker = [], 0, None
        while True:
            page = op(**params, **({"Marker": marker} if marker else {}))
            n += 1
            count("calls")
            items += page[field]
            if not page.get("Truncated"):
                return items, n
            marker = page["NextMarker"]

    def one_key(key_id):
        meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
        count("calls")
        if meta.get("Origin") != "EXTERNAL":
            return
        count("external")
        pages(kms.list_resource_tags, "Tags", KeyId=key_id)
        try:
            pages(kms.list_key_rotations, "Rotations", KeyId=key_id,
                  IncludeKeyMaterial="ALL_KEY_MATERIAL")
        except ClientError as e:
            count("calls")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = e.response.get("Error", {}).get("Code")
            if code != "InternalFailure" or not 500 <= (status or 0) < 600:
                sys.exit(f"floor_inventory_boto3: ListKeyRotations {key_id}: HTTP {status} {code}"
                         f" (only LocalStack's InternalFailure is expected): {e}")
            count("rotation_errors")

    start = time.monotonic()
    keys, key_pages = pages(kms.list_keys, "Keys", Limit=1000)
    aliases, alias_pages = pages(kms.list_aliases, "Aliases", Limit=100)
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        try:
            # list() re-raises the first exception (or sys.exit) of any task.
            list(pool.map(one_key, [k["KeyId"] for k in keys]))
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    wall = (time.monotonic() - start) * 1000

    print(f"floor_ms {wall:.0f} keys {len(keys)} external {counts['external']} "
          f"calls {counts['calls']}")
    print(f"floor_inventory_boto3: pages: ListKeys {key_pages}, ListAliases {alias_pages} "
          f"({len(aliases)} aliases); ListKeyRotations InternalFailure {counts['rotation_errors']}"
          f" of {counts['external']}", file=sys.stderr)
    if len(keys) < args.n_expected:
        sys.exit(f"floor_inventory_boto3: ListKeys listed {len(keys)} keys, "
                 f"expected at least {args.n_expected}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
