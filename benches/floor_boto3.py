#!/usr/bin/env python3
"""benches/floor_boto3.py N [--endpoint URL] [--region R] [--prefix P]

The KMS floor for an N-target ceremony with `create = true`: the KMS calls byok makes for N
targets, made from ONE warm boto3 client in one process, one after another, with the SDK's
retries off, and nothing else (no HSM, no approvals, no transcript). Per target, in this order:

  DescribeKey(alias)             -> NotFoundException (the alias does not exist yet)
  CreateKey                      Origin EXTERNAL, SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT, a
                                 description and byok's tags (service, environment and
                                 byok:ceremony-target)
  CreateAlias                    alias -> the new key
  DescribeKey                    (only with --describe-after-create: byok does not make it;
                                 it checks the key from CreateKey's answer)
  GetParametersForImport         RSAES_OAEP_SHA_1, RSA_2048
  ImportKeyMaterial              32 random bytes wrapped with RSA-OAEP-SHA1 (`cryptography`),
                                 KEY_MATERIAL_DOES_NOT_EXPIRE, NEW_KEY_MATERIAL
  DescribeKey                    Enabled?
  Encrypt, Decrypt               a 32-byte challenge, round trip

The client is warmed first (one DescribeKey of a missing alias, untimed): connection pool,
credentials and endpoint resolution are set up before the clock starts. Prints one line,
`floor_ms <wall ms> calls <count>`, the wall time of the timed calls only. Endpoint and region
default to AWS_ENDPOINT_URL_KMS and AWS_REGION. Run it with the LocalStack venv's Python
(boto3 and cryptography): $HOME/.cache/byok/localstack-venv/bin/python.
"""

import argparse
import os
import secrets
import sys
import time

import boto3
from botocore.config import Config
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def main(argv):
    ap = argparse.ArgumentParser(prog="benches/floor_boto3.py")
    ap.add_argument("n", type=int, help="number of targets")
    ap.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL_KMS"))
    ap.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    ap.add_argument("--prefix", default=f"floor{secrets.token_hex(4)}",
                    help="alias prefix (default: random), aliases are alias/PREFIX-sI-e")
    ap.add_argument("--describe-after-create", action="store_true",
                    help="also DescribeKey after CreateAlias (9 calls per target instead of 8)")
    args = ap.parse_args(argv)

    kms = boto3.client(
        "kms",
        endpoint_url=args.endpoint,
        region_name=args.region,
        # total_max_attempts 1 is one attempt; max_attempts 1 would still allow a retry.
        config=Config(retries={"total_max_attempts": 1}),
    )
    # Warm-up, untimed.
    try:
        kms.describe_key(KeyId=f"alias/{args.prefix}-warmup")
    except kms.exceptions.NotFoundException:
        pass

    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    calls = 0
    start = time.monotonic()
    for i in range(args.n):
        service, environment = f"s{i}", "e"
        alias = f"alias/{args.prefix}-{service}-{environment}"
        try:
            kms.describe_key(KeyId=alias)
            sys.exit(f"floor_boto3: {alias} exists already")
        except kms.exceptions.NotFoundException:
            pass
        meta = kms.create_key(
            Origin="EXTERNAL",
            KeySpec="SYMMETRIC_DEFAULT",
            KeyUsage="ENCRYPT_DECRYPT",
            Description=f"{service} data, {environment}",
            Tags=[
                {"TagKey": "byok:ceremony-target", "TagValue": f"{args.prefix} {alias}"},
                {"TagKey": "environment", "TagValue": environment},
                {"TagKey": "service", "TagValue": service},
            ],
        )["KeyMetadata"]
        arn = meta["Arn"]
        kms.create_alias(AliasName=alias, TargetKeyId=arn)
        calls += 3
        if args.describe_after_create:
            kms.describe_key(KeyId=arn)
            calls += 1
        params = kms.get_parameters_for_import(
            KeyId=arn, WrappingAlgorithm="RSAES_OAEP_SHA_1", WrappingKeySpec="RSA_2048")
        public = serialization.load_der_public_key(params["PublicKey"])
        blob = public.encrypt(secrets.token_bytes(32), oaep)
        kms.import_key_material(
            KeyId=arn,
            ImportToken=params["ImportToken"],
            EncryptedKeyMaterial=blob,
            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
            ImportType="NEW_KEY_MATERIAL",
        )
        state = kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"]
        if state != "Enabled":
            sys.exit(f"floor_boto3: {arn} is {state} after the import")
        challenge = secrets.token_bytes(32)
        ciphertext = kms.encrypt(KeyId=arn, Plaintext=challenge)["CiphertextBlob"]
        if kms.decrypt(KeyId=arn, CiphertextBlob=ciphertext)["Plaintext"] != challenge:
            sys.exit(f"floor_boto3: {arn}: the round trip returned different bytes")
        calls += 5
    wall = (time.monotonic() - start) * 1000
    print(f"floor_ms {wall:.0f} calls {calls}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
