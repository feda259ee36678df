"""Every .tf file parses, and the example wires the modules with arguments that exist.

Without a terraform binary, a typo in a module argument or output name would only show at `terraform plan` on a
user's machine; these checks catch it here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .terraform_hcl import (
    EXAMPLES_DIR,
    MODULES_DIR,
    REPO_ROOT,
    TERRAFORM_DIR,
    all_tf_files,
    is_allowed,
    load_module,
    load_tf,
)

MODULE_DIRS = sorted(p for p in MODULES_DIR.iterdir() if p.is_dir())
EXAMPLE_DIRS = sorted(p for p in EXAMPLES_DIR.iterdir() if p.is_dir())
SKIP_COMMENT = re.compile(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def test_expected_modules_and_example_exist() -> None:
    assert {p.name for p in MODULE_DIRS} >= {"repository-bucket", "scheduled-backup"}
    assert "complete" in {p.name for p in EXAMPLE_DIRS}


@pytest.mark.parametrize("path", all_tf_files(), ids=lambda p: str(p.relative_to(TERRAFORM_DIR)))
def test_every_tf_file_parses(path: Path) -> None:
    assert load_tf(path), f"{path} is empty"


@pytest.mark.parametrize("path", MODULE_DIRS + EXAMPLE_DIRS, ids=lambda p: p.name)
def test_aws_provider_is_pinned(path: Path) -> None:
    terraform = load_module(path).blocks["terraform"][0]
    aws = terraform["required_providers"][0]["aws"]
    assert aws["source"] == "hashicorp/aws"
    assert aws["version"].startswith(">=")
    assert "required_version" in terraform


@pytest.mark.parametrize("path", MODULE_DIRS + EXAMPLE_DIRS, ids=lambda p: p.name)
def test_variables_and_outputs_are_documented(path: Path) -> None:
    module = load_module(path)
    for name, body in module.named("variable").items():
        assert body.get("description"), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"
    for name, body in module.named("output").items():
        assert body.get("description"), f"output {name} has no description"


def test_every_checkov_skip_is_justified() -> None:
    files = all_tf_files() + sorted(TERRAFORM_DIR.rglob("Dockerfile"))
    skips = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            match = SKIP_COMMENT.search(line)
            if match:
                skips.append((path.name, match.group(1), (match.group(2) or "").strip()))
    assert skips, "expected the documented skips (e.g. CKV_AWS_144 on the bucket)"
    for name, check, reason in skips:
        assert len(reason) >= 40, f"{name}: skip of {check} needs a real justification"


# --- the complete example ------------------------------------------------------------------------------------

EXAMPLE = load_module(EXAMPLES_DIR / "complete")


def module_calls() -> dict[str, dict]:
    return EXAMPLE.named("module")


@pytest.mark.parametrize("call", ["repository", "backup", "maintenance"])
def test_example_module_arguments_exist_and_required_ones_are_set(call: str) -> None:
    body = module_calls()[call]
    source = (EXAMPLES_DIR / "complete" / body["source"]).resolve()
    assert source.is_dir() and source.parent == MODULES_DIR
    variables = load_module(source).named("variable")
    arguments = set(body) - {"source", "version", "providers", "depends_on", "count", "for_each"}
    assert arguments <= set(variables), f"unknown arguments: {arguments - set(variables)}"
    required = {name for name, v in variables.items() if "default" not in v}
    assert required <= arguments, f"missing required arguments: {required - arguments}"


def test_example_references_only_existing_module_outputs() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((EXAMPLES_DIR / "complete").glob("*.tf")))
    calls = module_calls()
    references = set(re.findall(r"module\.([\w-]+)\.([\w-]+)", text))
    assert references
    for call, output in references:
        source = (EXAMPLES_DIR / "complete" / calls[call]["source"]).resolve()
        assert output in load_module(source).named("output"), f"module.{call}.{output} does not exist"


def test_example_splits_writer_and_maintainer() -> None:
    calls = module_calls()
    assert calls["backup"]["repository_policy_arns"].startswith("${concat([module.repository.writer_policy_arn]")
    assert "maintainer" not in calls["backup"]["repository_policy_arns"]
    assert calls["backup"].get("prune") is None and calls["backup"].get("compact") is None
    maintenance = calls["maintenance"]
    assert maintenance["repository_policy_arns"] == ["${module.repository.maintainer_policy_arn}"]
    assert maintenance["compact"] is True and maintenance["prune"]
    assert maintenance["passphrase_secret_arn"] == "${module.backup.passphrase_secret_arn}"
    assert maintenance["passphrase_kms_key_arn"] == "${module.backup.kms_key_arn}"
    for call in ("backup", "maintenance"):
        assert calls[call]["repository_url"] == "${module.repository.repository_url}"


def test_example_image_repository_is_immutable_and_scanned() -> None:
    ecr = EXAMPLE.resources("aws_ecr_repository")["packvault"]
    assert ecr["image_tag_mutability"] == "IMMUTABLE"
    assert ecr["image_scanning_configuration"][0]["scan_on_push"] is True


def test_evaluator_refuses_what_it_cannot_judge() -> None:
    """The IAM helper must fail loudly on an operator it does not model, not answer 'allowed'."""
    from .terraform_hcl import Statement

    statement = Statement("x", "Allow", ("s3:GetObject",), ("*",), (("IpAddress", "aws:SourceIp", ("1/8",)),))
    with pytest.raises(ValueError):
        is_allowed([statement], "s3:GetObject", "arn:aws:s3:::b/k", {"aws:SourceIp": "1.2.3.4"})


def test_no_registry_host_or_machine_path_in_infra_files() -> None:
    """Infra files are copied into users' projects: they must not carry local paths."""
    files = [*all_tf_files(), *sorted(TERRAFORM_DIR.rglob("Dockerfile"))]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "/work/" not in text and "/root/" not in text, path.relative_to(REPO_ROOT)
