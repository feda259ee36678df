"""terraform/modules/scale-out: the ASL definition it deploys, its wiring, and what each role may do.

There is no terraform binary here, so the state machine definition is rendered from the module's own
``local.asl_variables`` (evaluated for concrete inputs) with a templatefile() equivalent and checked as Step
Functions would: every transition lands on a state, the Distributed Map reads the plan the Plan task wrote,
parts retry PartIncomplete, and so on. IAM policies are evaluated with the same small evaluator as the other
modules' tests.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from .scale_out_asl import MODULE_DIR, all_states, render_definition, render_template, template_variables
from .terraform_hcl import (
    EXAMPLES_DIR,
    MODULES_DIR,
    Module,
    blocks,
    is_allowed,
    load_module,
    module_env,
    policy_statements,
    render,
)

MODULE = load_module(MODULE_DIR)

ACCOUNT = "111122223333"
REGION = "eu-1"
PLAN_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:bulk-plan"
PART_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:bulk-part"
MERGE_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:bulk-merge"
OTHER_FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:something-else"
SM_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:bulk"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/module"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:packvault/bulk/passphrase-AbCdEf"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:packvault-bulk-dead-letter"
REPO_OBJECTS = "arn:aws:s3:::repo-bucket/main/"
SOURCE_BUCKET = "arn:aws:s3:::data-lake"
WORK = "arn:aws:s3:::repo-bucket/packvault-scale-out/bulk/"

VARIABLES: dict[str, Any] = {
    "name": "bulk",
    "image_uri": "1.dkr.ecr.eu-1.amazonaws.com/packvault:1",
    "repository_url": "s3://repo-bucket/main",
    "source_url": "s3://data-lake/media",
    "work_bucket_name": "repo-bucket",
    "worker_policy_arns": [f"arn:aws:iam::{ACCOUNT}:policy/writer"],
    "merge_policy_arns": [f"arn:aws:iam::{ACCOUNT}:policy/writer"],
}
# What Terraform would know after apply, and the locals that need functions this evaluator does not model
# (regex, coalesce); their values here are what those functions return for VARIABLES.
KNOWN: dict[str, Any] = {
    "data.aws_caller_identity.current.account_id": ACCOUNT,
    "data.aws_partition.current.partition": "aws",
    "data.aws_region.current.name": REGION,
    "aws_kms_key.this[0].arn": KEY_ARN,
    "aws_secretsmanager_secret.passphrase[0].arn": SECRET_ARN,
    "aws_sqs_queue.dead_letter.arn": QUEUE_ARN,
    "aws_sfn_state_machine.this.arn": SM_ARN,
    "local.repository_objects": REPO_OBJECTS,
    "local.source_bucket_arn": SOURCE_BUCKET,
    "local.source_key_prefix": "media/",
    "local.work_prefix": "packvault-scale-out/bulk/",
    "local.step_function_arns": [MERGE_ARN, PART_ARN, PLAN_ARN],
}
FUNCTION_ARNS = {"plan": PLAN_ARN, "part": PART_ARN, "merge": MERGE_ARN}


# The module with the locals given in KNOWN taken out, so the evaluator uses those values instead of
# rendering the function calls it does not model as text.
_EVALUABLE = Module(
    MODULE.path,
    {
        **MODULE.blocks,
        "locals": [{k: v for k, v in MODULE.locals().items() if f"local.{k}" not in KNOWN}],
    },
)


def env(**overrides: Any) -> dict[str, Any]:
    return module_env(_EVALUABLE, KNOWN, **{**VARIABLES, **overrides})


def asl_values(**overrides: Any) -> dict[str, Any]:
    """Evaluate ``local.asl_variables`` for VARIABLES: each entry is one of a few expression shapes, and
    anything else fails the test rather than being guessed."""
    environment = env(**overrides)
    values: dict[str, Any] = {}
    for name, expression in MODULE.locals()["asl_variables"].items():
        function = re.fullmatch(r'\$\{aws_lambda_function\.this\["(\w+)"\]\.arn\}', expression)
        decimal = re.fullmatch(r'\$\{format\("%\.1f", (var\.\w+)\)\}', expression)
        addition = re.fullmatch(r"\$\{(var\.\w+) \+ (\d+)\}", expression)
        if function:
            values[name] = FUNCTION_ARNS[function.group(1)]
        elif decimal:
            values[name] = f"{environment[decimal.group(1)]:.1f}"
        elif addition:
            values[name] = environment[addition.group(1)] + int(addition.group(2))
        else:
            values[name] = render(expression, environment)
    return values


def definition(**overrides: Any) -> dict[str, Any]:
    return render_definition(asl_values(**overrides))


def top(**overrides: Any) -> dict[str, dict[str, Any]]:
    return definition(**overrides)["States"]


def the_map(**overrides: Any) -> dict[str, Any]:
    maps = [s for s in top(**overrides).values() if s["Type"] == "Map"]
    assert len(maps) == 1
    return maps[0]


# --- the template and templatefile() ------------------------------------------------------------------------


def test_template_variables_are_exactly_the_ones_the_module_passes() -> None:
    # templatefile() fails on a missing key; an unused key hints at a wiring mistake.
    assert template_variables() == set(MODULE.locals()["asl_variables"])
    state_machine = MODULE.resource("aws_sfn_state_machine")
    assert state_machine["definition"] == (
        '${templatefile("${path.module}/state-machine.asl.json", local.asl_variables)}'
    )
    assert state_machine["type"] == "STANDARD"


def test_renderer_behaves_like_templatefile() -> None:
    assert render_template({"a": 3, "b": "x"}, '{"n": ${a}, "s": "${b}", "lit": "$${a}"}') == (
        '{"n": 3, "s": "x", "lit": "${a}"}'
    )
    with pytest.raises(KeyError):
        render_template({}, '{"n": ${missing}}')
    with pytest.raises(ValueError):
        render_template({"a": 1}, '{"n": ${a + 1}}')


def test_rendered_definition_is_json_with_reachable_states_only() -> None:
    rendered = definition()
    assert rendered["StartAt"] in rendered["States"]
    for path, name, state, siblings in all_states(rendered):
        where = f"{path}{name}"
        kind = state["Type"]
        targets = [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Catch", [])]
        targets += [c.get("Next") for c in state.get("Choices", [])]
        for target in filter(None, targets):
            assert target in siblings, f"{where}: transition to missing state {target!r}"
        if kind in ("Succeed", "Fail"):
            assert "Next" not in state and "End" not in state, where
        elif kind != "Choice":
            assert ("Next" in state) != (state.get("End") is True), f"{where}: needs exactly one of Next or End"
        for processor in ("ItemProcessor",):
            if processor in state:
                assert state[processor]["StartAt"] in state[processor]["States"], where
    # Every state is reachable from StartAt (an orphan is a sign of a broken edit).
    reachable, todo = set(), [rendered["StartAt"]]
    while todo:
        name = todo.pop()
        if name in reachable:
            continue
        reachable.add(name)
        state = rendered["States"][name]
        todo += [t for t in (state.get("Next"), state.get("Default")) if t]
        todo += [c["Next"] for c in state.get("Catch", [])]
    assert reachable == set(rendered["States"])


def test_flow_is_plan_then_map_then_merge_then_succeed() -> None:
    rendered = definition()
    states = rendered["States"]
    order, name = [], rendered["StartAt"]
    while name:
        order.append(states[name]["Type"])
        name = states[name].get("Next")
    assert order == ["Pass", "Task", "Map", "Task", "Succeed"]


def test_task_resources_are_the_function_arns() -> None:
    resources = {
        s["Parameters"]["action"]: s["Resource"] for _, _, s, _ in all_states(definition()) if s["Type"] == "Task"
    }
    assert resources == {"plan": PLAN_ARN, "part": PART_ARN, "merge": MERGE_ARN}


def test_task_events_match_the_handler_interface() -> None:
    states = top()
    plan = states["Plan"]
    assert set(plan["Parameters"]) == {"action", "source.$", "parts.$", "output.$"}
    prepare = states["Prepare"]["Parameters"]
    assert prepare["source"] == "s3://data-lake/media" and prepare["parts"] == 64
    part = the_map()["ItemProcessor"]["States"]["BackUpPart"]
    assert part["Parameters"] == {"action": "part", "archive.$": "$.archive", "item.$": "$.item"}
    merge = states["Merge"]["Parameters"]
    assert merge == {"action": "merge", "archive.$": "$.planned.archive", "parts.$": "$.planned.parts"}
    # The plan task's result keeps what the handler returns; the merge and the Map read it from there.
    assert plan["ResultPath"] == "$.planned"
    assert plan["ResultSelector"] == {"archive.$": "$.archive", "parts.$": "$.parts", "plan.$": "$.plan"}


def test_item_reader_reads_the_object_the_plan_task_writes() -> None:
    states = top()
    reader = the_map()["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:getObject"
    assert reader["ReaderConfig"] == {"InputType": "JSON"}
    assert reader["Parameters"] == {"Bucket.$": "$.plan_bucket", "Key.$": "$.plan_key"}
    prepare = states["Prepare"]["Parameters"]
    assert prepare["plan_bucket"] == "repo-bucket"
    assert prepare["plan_key.$"] == "States.Format('packvault-scale-out/bulk/plans/{}.json', $$.Execution.Name)"
    # ... and the Plan task is told to write exactly there.
    assert states["Plan"]["Parameters"]["output.$"] == "States.Format('s3://{}/{}', $.plan_bucket, $.plan_key)"
    # Prepare's output is the Plan's input, and the Plan keeps its input (ResultPath), so the Map still has it.
    assert "ResultPath" not in states["Prepare"] and states["Plan"]["ResultPath"].startswith("$.")


def test_map_is_distributed_with_selector_and_result_writer() -> None:
    state = the_map()
    assert state["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert state["ItemSelector"] == {"archive.$": "$.planned.archive", "item.$": "$$.Map.Item.Value"}
    writer = state["ResultWriter"]
    assert writer["Resource"] == "arn:aws:states:::s3:putObject"
    assert writer["Parameters"] == {"Bucket": "repo-bucket", "Prefix": "packvault-scale-out/bulk/results/"}
    assert state["ResultPath"] == "$.results"  # the Map's output must not replace the plan's archive name


def test_concurrency_and_failure_threshold_come_from_variables() -> None:
    state = the_map(max_concurrency=17, tolerated_failure_percentage=5)
    assert state["MaxConcurrency"] == 17
    assert state["ToleratedFailurePercentage"] == 5.0
    defaults = the_map()
    assert defaults["MaxConcurrency"] == MODULE.variable_defaults()["max_concurrency"]
    assert defaults["ToleratedFailurePercentage"] == 0


def test_parts_retry_part_incomplete_without_backoff_and_lambda_errors_with_it() -> None:
    part = the_map(part_max_attempts=250, part_retry_interval_seconds=3)["ItemProcessor"]["States"]["BackUpPart"]
    retries = {tuple(r["ErrorEquals"]): r for r in part["Retry"]}
    incomplete = retries[("PartIncomplete",)]
    assert incomplete["MaxAttempts"] == 250 and incomplete["IntervalSeconds"] == 3
    assert incomplete["BackoffRate"] == 1.0
    lambda_errors = next(r for errors, r in retries.items() if "Lambda.ServiceException" in errors)
    assert {"Lambda.TooManyRequestsException", "Lambda.SdkClientException"} <= set(lambda_errors["ErrorEquals"])
    assert lambda_errors["BackoffRate"] > 1
    # A genuine failure (States.TaskFailed, an engine error) is not retried blindly.
    assert not any("States.ALL" in errors or "States.TaskFailed" in errors for errors in retries)
    # The task gives a function the whole Lambda timeout before Step Functions gives up on it.
    assert part["TimeoutSeconds"] > MODULE.variable_defaults()["timeout"]


def test_every_failure_ends_in_a_fail_state_with_a_cause() -> None:
    states = top()
    for name in ("Plan", "BackUpParts", "Merge"):
        catches = states[name]["Catch"]
        assert [c["ErrorEquals"] for c in catches] == [["States.ALL"]], name
        target = states[catches[0]["Next"]]
        assert target["Type"] == "Fail", name
        assert target["Error"].startswith("Packvault.")
        assert catches[0]["ResultPath"] == "$.error"
        assert "$.error.Cause" in target["CausePath"] and target["CausePath"].startswith("States.Format(")


def validation_pattern(name: str) -> re.Pattern[str]:
    """The regex of a variable's ``can(regex("...", var.x))`` validation, as Python sees it (HCL string escapes
    undone; RE2 and Python agree on the constructs used)."""
    condition = MODULE.named("variable")[name]["validation"][0]["condition"]
    match = re.search(r'regex\("(.*)", var\.' + name + r"\)", condition)
    assert match, f"{name}: no regex validation"
    return re.compile(match.group(1).encode().decode("unicode_escape"))


@pytest.mark.parametrize("name", ["repository_url", "source_url"])
def test_urls_that_would_break_the_asl_or_widen_a_grant_are_refused(name: str) -> None:
    pattern = validation_pattern(name)
    assert pattern.match("s3://data-lake/media") and pattern.match("s3://data-lake")
    assert pattern.match("s3://data-lake/media/2026-12/")
    assert not pattern.match('s3://data-lake/me"dia')  # ends the ASL string early
    assert not pattern.match("s3://data-lake/me\\dia")
    assert not pattern.match("s3://data-lake/media?endpoint=x")  # endpoints come from the environment
    assert not pattern.match("s3://data-lake/med*")  # would widen ${bucket}/${prefix}* in the IAM policies
    assert not pattern.match("/local/path")


def test_work_prefix_is_safe_in_intrinsic_functions_and_policies() -> None:
    pattern = validation_pattern("work_prefix")
    assert pattern.match("scale-out/") and pattern.match("packvault-scale-out/lake_1/")
    for bad in ("scale-out", "it's/", "a{}/", "a*/", 'a"/'):
        assert not pattern.match(bad), bad


def test_schedule_image_and_arn_variables_are_validated() -> None:
    assert validation_pattern("schedule_expression").match("cron(0 1 * * ? *)")
    assert validation_pattern("schedule_expression").match("rate(6 hours)")
    assert not validation_pattern("schedule_expression").match("0 1 * * *")
    assert validation_pattern("image_uri").match("1.dkr.ecr.eu-1.amazonaws.com/packvault:1")
    assert validation_pattern("image_uri").match("1.dkr.ecr.eu-1.amazonaws.com/packvault@sha256:ab12")
    assert not validation_pattern("image_uri").match("packvault")
    for name in ("kms_key_arn", "source_kms_key_arn", "work_bucket_kms_key_arn", "passphrase_kms_key_arn"):
        assert validation_pattern(name).match(KEY_ARN), name
        assert not validation_pattern(name).match(SECRET_ARN), name
    without_default = {n for n, v in MODULE.named("variable").items() if "default" not in v}
    assert without_default == {
        "name", "image_uri", "repository_url", "source_url", "work_bucket_name", "worker_policy_arns",
        "merge_policy_arns",
    }  # fmt: skip


def test_every_variable_is_used() -> None:
    """No variable that parses and then does nothing."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(MODULE_DIR.glob("*.tf")) if p.name != "variables.tf")
    unused = [name for name in MODULE.named("variable") if not re.search(rf"\bvar\.{name}\b", text)]
    assert not unused


# --- functions ----------------------------------------------------------------------------------------------


def test_functions_run_the_scale_out_handler_from_the_image() -> None:
    function = MODULE.resource("aws_lambda_function")
    assert function["for_each"] == "${local.functions}"
    assert blocks(function, "image_config")[0]["command"] == ["packvault.serverless.scaleout.handler"]
    assert function["package_type"] == "Image" and function["image_uri"] == "${var.image_uri}"
    assert set(MODULE.locals()["functions"]) == {"plan", "part", "merge"}
    environment = MODULE.locals()["handler_environment"]
    assert environment["PACKVAULT_REPO"] == "${var.repository_url}"
    assert environment["PACKVAULT_PASSPHRASE_SECRET_ARN"] == "${local.secret_arn}"
    # extra_environment first: it may tune Packvault but never redirect the repository or the secret.
    assert MODULE.locals()["environment"] == "${merge(var.extra_environment, local.handler_environment)}"


def test_part_concurrency_is_the_map_concurrency() -> None:
    functions = render(MODULE.locals()["functions"], env(max_concurrency=23))
    assert functions["part"]["concurrency"] == 23
    assert functions["plan"]["concurrency"] == functions["merge"]["concurrency"] == 1


# --- IAM ----------------------------------------------------------------------------------------------------


def statements(document: str, **extra: Any) -> list:
    return policy_statements(MODULE.data("aws_iam_policy_document", document), {**env(), **extra})


def function_statements(step: str, document: str | None = None) -> list:
    """Everything inline on one function's role: the base policy plus its step policy (and the passphrase)."""
    log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/bulk-{step}"
    found = statements(
        "function_base", **{"each.key": step, "aws_cloudwatch_log_group.function[each.key].arn": log_group}
    )
    found += statements(document or step)
    passphrase_roles = render(MODULE.resource("aws_iam_role_policy", "passphrase")["for_each"], {})
    if step in passphrase_roles:
        found += statements("passphrase")
    return found


def actions_of(found: list) -> set[str]:
    return {action for s in found if s.effect == "Allow" for action in s.actions}


def test_passphrase_policy_goes_to_part_and_merge_only() -> None:
    assert MODULE.resource("aws_iam_role_policy", "passphrase")["for_each"] == '${toset(["part", "merge"])}'


def test_plan_role_lists_the_source_and_writes_plans_only() -> None:
    found = function_statements("plan")
    assert actions_of(found) == {
        "logs:CreateLogStream", "logs:PutLogEvents", "kms:Decrypt", "xray:PutTraceSegments",
        "xray:PutTelemetryRecords", "s3:ListBucket", "s3:PutObject",
    }  # fmt: skip
    assert is_allowed(found, "s3:ListBucket", SOURCE_BUCKET, {"s3:prefix": "media/2026/"})
    assert not is_allowed(found, "s3:ListBucket", SOURCE_BUCKET, {"s3:prefix": "private/"})
    assert not is_allowed(found, "s3:GetObject", f"{SOURCE_BUCKET}/media/a.jpg")
    assert is_allowed(found, "s3:PutObject", f"{WORK}plans/exec-1.json")
    assert not is_allowed(found, "s3:PutObject", f"{WORK}results/x")
    assert not is_allowed(found, "s3:PutObject", f"{REPO_OBJECTS}archives/x")
    assert not is_allowed(found, "secretsmanager:GetSecretValue", SECRET_ARN)
    attachments = [r["role"] for r in MODULE.resources("aws_iam_role_policy_attachment").values()]
    assert '${aws_iam_role.function["plan"].name}' not in attachments


def test_part_role_reads_its_source_prefix_and_the_passphrase() -> None:
    found = function_statements("part")
    assert actions_of(found) == {
        "logs:CreateLogStream", "logs:PutLogEvents", "kms:Decrypt", "xray:PutTraceSegments",
        "xray:PutTelemetryRecords", "s3:ListBucket", "s3:GetObject", "secretsmanager:GetSecretValue",
    }  # fmt: skip
    assert is_allowed(found, "s3:GetObject", f"{SOURCE_BUCKET}/media/2026/a.jpg")
    assert not is_allowed(found, "s3:GetObject", f"{SOURCE_BUCKET}/private/a.jpg")
    assert not is_allowed(found, "s3:PutObject", f"{SOURCE_BUCKET}/media/a.jpg")
    assert is_allowed(found, "secretsmanager:GetSecretValue", SECRET_ARN)
    # Repository writes come from the writer policy attachment, nothing inline.
    assert not is_allowed(found, "s3:PutObject", f"{REPO_OBJECTS}packs/ab/cd")
    attachment = MODULE.resource("aws_iam_role_policy_attachment", "part_repository")
    assert attachment["role"] == '${aws_iam_role.function["part"].name}'
    assert attachment["policy_arn"] == "${var.worker_policy_arns[count.index]}"


def test_part_role_decrypts_an_encrypted_source_only_when_asked() -> None:
    source_key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/source"
    without = statements("part")
    with_key = policy_statements(MODULE.data("aws_iam_policy_document", "part"), env(source_kms_key_arn=source_key))
    assert not is_allowed(without, "kms:Decrypt", source_key)
    assert is_allowed(with_key, "kms:Decrypt", source_key)


def test_merge_role_may_retire_archive_entries_and_nothing_else() -> None:
    found = function_statements("merge")
    assert actions_of(found) == {
        "logs:CreateLogStream", "logs:PutLogEvents", "kms:Decrypt", "xray:PutTraceSegments",
        "xray:PutTelemetryRecords", "s3:PutObject", "s3:DeleteObject", "secretsmanager:GetSecretValue",
    }  # fmt: skip
    entry = f"{REPO_OBJECTS}archives/0123abcd"
    # soft delete = copy to X.del + delete X
    assert is_allowed(found, "s3:PutObject", f"{entry}.del")
    assert is_allowed(found, "s3:DeleteObject", entry)
    # never a soft-deleted entry (that would make the retirement irreversible), never data or index
    assert not is_allowed(found, "s3:DeleteObject", f"{entry}.del")
    for key in ("packs/ab/abcdef", "index/abc", "config/config", "keys/repokey", "names/abc-0"):
        assert not is_allowed(found, "s3:DeleteObject", f"{REPO_OBJECTS}{key}"), key
        assert not is_allowed(found, "s3:PutObject", f"{REPO_OBJECTS}{key}"), key
    # overwriting a live entry is the writer policy's business (create-only), not granted here
    assert not is_allowed(found, "s3:PutObject", entry)
    assert not is_allowed(found, "s3:DeleteObject", "arn:aws:s3:::repo-bucket/other/archives/x")
    attachment = MODULE.resource("aws_iam_role_policy_attachment", "merge_repository")
    assert attachment["role"] == '${aws_iam_role.function["merge"].name}'


def test_state_machine_role_is_exactly_what_the_definition_needs() -> None:
    found = statements("state_machine")
    assert actions_of(found) == {
        "lambda:InvokeFunction", "s3:GetObject", "s3:PutObject", "s3:ListMultipartUploadParts",
        "s3:AbortMultipartUpload", "states:StartExecution", "states:DescribeExecution", "states:StopExecution",
        "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups", "xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
    }  # fmt: skip
    for arn in FUNCTION_ARNS.values():
        assert is_allowed(found, "lambda:InvokeFunction", arn)
    assert not is_allowed(found, "lambda:InvokeFunction", OTHER_FUNCTION)
    assert is_allowed(found, "s3:GetObject", f"{WORK}plans/exec-1.json")
    assert not is_allowed(found, "s3:GetObject", f"{REPO_OBJECTS}keys/repokey")
    assert not is_allowed(found, "s3:GetObject", f"{SOURCE_BUCKET}/media/a.jpg")
    assert is_allowed(found, "s3:PutObject", f"{WORK}results/run/manifest.json")
    assert not is_allowed(found, "s3:PutObject", f"{WORK}plans/exec-1.json")
    assert not is_allowed(found, "s3:PutObject", f"{REPO_OBJECTS}archives/x")
    assert is_allowed(found, "s3:GetObject", f"{WORK}results/run/manifest.json")
    # the Distributed Map's child workflows are executions of this state machine, and only those
    own = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:bulk"
    assert is_allowed(found, "states:StartExecution", own)
    assert not is_allowed(found, "states:StartExecution", f"{own}-other")
    child = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:bulk/Parts:0f1fc6a8"
    assert is_allowed(found, "states:DescribeExecution", child)
    assert is_allowed(found, "states:StopExecution", child)
    assert not is_allowed(found, "states:DescribeExecution", f"arn:aws:states:{REGION}:{ACCOUNT}:execution:other/x")
    assert is_allowed(found, "states:DescribeExecution", f"arn:aws:states:{REGION}:{ACCOUNT}:execution:bulk:run-1")
    assert not is_allowed(found, "states:StopExecution", f"arn:aws:states:{REGION}:{ACCOUNT}:execution:bulk-2:run-1")
    # everything on "*" is one of the calls AWS offers no resource-level restriction for
    wildcard = {a for s in found if "*" in s.resources for a in s.actions}
    assert wildcard and all(a.startswith(("logs:", "xray:")) for a in wildcard)


def test_state_machine_role_trusts_states_of_this_account_only() -> None:
    (trust,) = statements("states_assume")
    assert trust.principals == (("Service", ("states.amazonaws.com",)),)
    assert trust.conditions == (("StringEquals", "aws:SourceAccount", (ACCOUNT,)),)


def test_scheduler_role_only_starts_this_state_machine() -> None:
    found = statements("scheduler")
    assert actions_of(found) == {"states:StartExecution", "sqs:SendMessage", "kms:Decrypt", "kms:GenerateDataKey"}
    assert is_allowed(found, "states:StartExecution", SM_ARN)
    assert not is_allowed(found, "states:StartExecution", f"{SM_ARN}-other")
    schedule = MODULE.resource("aws_scheduler_schedule")
    target = blocks(schedule, "target")[0]
    assert target["arn"] == "${aws_sfn_state_machine.this.arn}"
    assert target["role_arn"] == "${aws_iam_role.scheduler.arn}"
    assert re.fullmatch(r"\$\{jsonencode\(\{.*job\s*=\s*var\.name.*\}\)\}", target["input"], re.DOTALL)


def test_no_role_can_touch_the_repository_keys_or_config() -> None:
    for step in ("plan", "part", "merge"):
        found = function_statements(step)
        for key in ("keys/repokey", "config/config"):
            for action in ("s3:PutObject", "s3:DeleteObject"):
                assert not is_allowed(found, action, f"{REPO_OBJECTS}{key}"), (step, action, key)
    for document in ("state_machine", "scheduler"):
        found = statements(document)
        assert not any(a.startswith("secretsmanager:") for a in actions_of(found)), document


# --- the example ----------------------------------------------------------------------------------------------

EXAMPLE_DIR = EXAMPLES_DIR / "scale-out"


def test_example_wires_the_module_with_existing_arguments() -> None:
    example = load_module(EXAMPLE_DIR)
    calls = example.named("module")
    scale_out = calls["scale_out"]
    source = (EXAMPLE_DIR / scale_out["source"]).resolve()
    assert source == (MODULES_DIR / "scale-out").resolve()
    variables = MODULE.named("variable")
    arguments = set(scale_out) - {"source", "version", "providers", "depends_on", "count", "for_each"}
    assert arguments <= set(variables), arguments - set(variables)
    required = {name for name, v in variables.items() if "default" not in v}
    assert required <= arguments, required - arguments
    # parts write with the writer policy; nothing in the example hands a scale-out role the maintainer policy
    assert scale_out["worker_policy_arns"] == ["${module.repository.writer_policy_arn}"]
    assert scale_out["merge_policy_arns"] == ["${module.repository.writer_policy_arn}"]
    assert "maintainer" not in json.dumps(scale_out)
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(EXAMPLE_DIR.glob("*.tf")))
    for call, output in set(re.findall(r"module\.([\w-]+)\.([\w-]+)", text)):
        target = load_module((EXAMPLE_DIR / calls[call]["source"]).resolve())
        assert output in target.named("output"), f"module.{call}.{output} does not exist"
