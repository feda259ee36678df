#!/usr/bin/env bash
# LocalStack init hook (runs inside the container once S3 and Secrets Manager are ready).
# Creates what Packvault's tests and a local trial need: the test bucket and a passphrase secret that a local
# run of the serverless handler can read through PACKVAULT_PASSPHRASE_SECRET_ARN. Safe to run again.
set -euo pipefail

bucket="${PACKVAULT_TEST_BUCKET:-packvault-test}"
secret="${PACKVAULT_TEST_SECRET:-packvault/test/passphrase}"

if awslocal s3api head-bucket --bucket "$bucket" >/dev/null 2>&1; then
    echo "packvault init: bucket $bucket already exists"
else
    awslocal s3api create-bucket --bucket "$bucket" >/dev/null
    echo "packvault init: created bucket $bucket"
fi

if awslocal secretsmanager describe-secret --secret-id "$secret" >/dev/null 2>&1; then
    echo "packvault init: secret $secret already exists"
else
    # A throwaway passphrase for local experiments only; LocalStack is bound to loopback.
    awslocal secretsmanager create-secret --name "$secret" --secret-string "packvault-localstack-test" >/dev/null
    echo "packvault init: created secret $secret"
fi
