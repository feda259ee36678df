"""The repository passphrase of a scheduled job: Secrets Manager, SSM Parameter Store, or the environment.

Only a *reference* to the secret lives in the function's configuration (``PACKVAULT_PASSPHRASE_SECRET_ARN``
or ``PACKVAULT_PASSPHRASE_SSM_PARAMETER``); the value is fetched at run time and kept in memory only, never
written to the environment (a child process or a crash dump would inherit it).  A warm container reuses
the value it fetched, which saves one API call per invocation; a rotated passphrase is picked up by the
next cold start, or at once if the cached one is rejected (see ``forget``).

Endpoints follow the AWS chain, so ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` / ``AWS_ENDPOINT_URL_SSM`` point
them at LocalStack or moto in tests.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping

from ..errors import PassphraseError, WrongPassphrase

_cache: dict[tuple[str, str], str] = {}


def passphrase_source(env: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """(kind, reference) of the configured passphrase; the first configured one wins."""
    if env.get("PACKVAULT_PASSPHRASE_SECRET_ARN"):
        return "secretsmanager", env["PACKVAULT_PASSPHRASE_SECRET_ARN"]
    if env.get("PACKVAULT_PASSPHRASE_SSM_PARAMETER"):
        return "ssm", env["PACKVAULT_PASSPHRASE_SSM_PARAMETER"]
    if env.get("PACKVAULT_PASSPHRASE") is not None:
        return "env", "PACKVAULT_PASSPHRASE"
    raise PassphraseError(
        "no passphrase configured",
        hint="set PACKVAULT_PASSPHRASE_SECRET_ARN, PACKVAULT_PASSPHRASE_SSM_PARAMETER or PACKVAULT_PASSPHRASE",
    )


def get_passphrase(env: Mapping[str, str] = os.environ) -> str:
    kind, ref = passphrase_source(env)
    if kind == "env":
        return env[ref]
    cached = _cache.get((kind, ref))
    if cached is not None:
        return cached
    value = _from_secrets_manager(ref) if kind == "secretsmanager" else _from_ssm(ref)
    _cache[(kind, ref)] = value
    return value


def forget(env: Mapping[str, str] = os.environ) -> None:
    """Drop the cached value (after the repository rejected it: it may have been rotated)."""
    with contextlib.suppress(PassphraseError):
        _cache.pop(passphrase_source(env), None)


def unlock_with_secret(repo) -> None:
    """Unlock ``repo`` with the job's passphrase; a wrong one is forgotten (a rotated secret is fetched
    again by the next invocation instead of failing every warm one)."""
    try:
        repo.unlock(get_passphrase())
    except WrongPassphrase:
        forget()
        raise


def _client(service: str):
    import boto3

    return boto3.session.Session().client(service)


def _from_secrets_manager(secret_id: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = _client("secretsmanager").get_secret_value(SecretId=secret_id)
    except (ClientError, BotoCoreError) as exc:
        raise PassphraseError(f"cannot read the passphrase secret {secret_id}: {_reason(exc)}") from None
    if "SecretString" in response:
        value = response["SecretString"]
    else:
        try:
            value = response["SecretBinary"].decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            raise PassphraseError(f"the passphrase secret {secret_id} holds no text") from None
    return _unwrap(value, secret_id)


def _from_ssm(name: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = _client("ssm").get_parameter(Name=name, WithDecryption=True)
    except (ClientError, BotoCoreError) as exc:
        raise PassphraseError(f"cannot read the passphrase parameter {name}: {_reason(exc)}") from None
    return _unwrap(response["Parameter"]["Value"], name)


def _unwrap(value: str, ref: str) -> str:
    """A secret is either the passphrase itself or a JSON object with a ``passphrase`` key (the console's
    key/value form)."""
    text = value.strip("\n")
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return text
        if isinstance(data, dict):
            if isinstance(data.get("passphrase"), str):
                return data["passphrase"]
            raise PassphraseError(f"the secret {ref} is a JSON object without a 'passphrase' string")
    if not text:
        raise PassphraseError(f"the passphrase secret {ref} is empty", hint="set its value (see docs/serverless.md)")
    return text


def _reason(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if response:
        return str(response.get("Error", {}).get("Code") or exc)
    return str(exc)
