"""Read the Terraform under ``terraform/`` with python-hcl2 and evaluate its IAM policy documents.

There is no terraform binary on the development machines or in CI, so ``terraform validate``/``plan`` cannot
check the modules.  Instead the tests parse the HCL and check the properties that matter for security.  For the
IAM policies a textual check ("DeleteObject appears only next to locks/") would be easy to fool, so this module
renders an ``aws_iam_policy_document`` for concrete inputs (bucket ARN, prefix, variables) and answers "is this
request allowed?" with a small IAM evaluator.  The evaluator supports only what the modules use (Allow/Deny,
``*`` wildcards, Null/Bool/String* conditions); an unsupported construct raises instead of guessing.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO_ROOT / "terraform"
MODULES_DIR = TERRAFORM_DIR / "modules"
EXAMPLES_DIR = TERRAFORM_DIR / "examples"

_QUOTED = re.compile(r'^"(.*)"$', re.DOTALL)
_WHOLE_REF = re.compile(r"^\$\{([A-Za-z_][\w.\-\[\]]*)\}$")
_EMBEDDED_REF = re.compile(r"\$\{([A-Za-z_][\w.\-\[\]]*)\}")
_CONDITIONAL = re.compile(r"^\$\{(.+?) \? (.+) : (.+)\}$", re.DOTALL)
_FOR_LIST = re.compile(r'^\$\{\[for (\w+) in ([\w.]+) : "(.*)"\]\}$')
_CALL = re.compile(r"^\$\{(jsonencode|merge)\((.*)\)\}$")
_OBJECT = re.compile(r"^\{\s*(\w+)\s*=\s*(.+?)\s*\}$")


def _normalize(value: Any) -> Any:
    """Make python-hcl2 7.x and 8.x output look alike: unquoted strings and keys, no ``__meta__`` entries."""
    if isinstance(value, dict):
        return {_normalize(k): _normalize(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, str):
        match = _QUOTED.match(value)
        return match.group(1) if match else value
    return value


def load_tf(path: Path) -> dict[str, Any]:
    """Parse one .tf file into plain dicts and lists (blocks are lists of dicts, as python-hcl2 gives them)."""
    options_cls = getattr(hcl2, "SerializationOptions", None)
    with path.open(encoding="utf-8") as handle:
        if options_cls is not None:
            options = options_cls(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
            parsed = hcl2.load(handle, serialization_options=options)
        else:  # python-hcl2 7.x
            parsed = hcl2.load(handle)
    return _normalize(parsed)


@dataclass
class Module:
    """All top-level blocks of one Terraform directory, merged over its .tf files."""

    path: Path
    blocks: dict[str, list[Any]] = field(default_factory=dict)

    def _labelled(self, kind: str, type_: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for entry in self.blocks.get(kind, []):
            for rtype, by_name in entry.items():
                if rtype == type_:
                    found.update(by_name)
        return found

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return self._labelled("resource", type_)

    def resource(self, type_: str, name: str = "this") -> dict[str, Any]:
        return self.resources(type_)[name]

    def data(self, type_: str, name: str) -> dict[str, Any]:
        return self._labelled("data", type_)[name]

    def named(self, kind: str) -> dict[str, dict[str, Any]]:
        """Blocks with one label: variable, output, module."""
        found: dict[str, dict[str, Any]] = {}
        for entry in self.blocks.get(kind, []):
            found.update(entry)
        return found

    def locals(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for entry in self.blocks.get("locals", []):
            merged.update(entry)
        return merged

    def variable_defaults(self) -> dict[str, Any]:
        return {name: body.get("default") for name, body in self.named("variable").items()}


def load_module(path: Path) -> Module:
    """Parse every .tf file of one directory (not its subdirectories) into a Module."""
    module = Module(path)
    for tf in sorted(path.glob("*.tf")):
        for kind, entries in load_tf(tf).items():
            module.blocks.setdefault(kind, []).extend(entries if isinstance(entries, list) else [entries])
    return module


def all_tf_files() -> list[Path]:
    """Every .tf file under terraform/, modules and examples alike."""
    return sorted(TERRAFORM_DIR.rglob("*.tf"))


def blocks(body: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    """The static nested blocks called ``name`` (python-hcl2 gives a list, or a dict for a single block)."""
    value = body.get(name, [])
    return [value] if isinstance(value, dict) else list(value)


def dynamic_blocks(body: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    """The ``dynamic "name"`` blocks: dicts with for_each and content."""
    return [entry[name] for entry in blocks(body, "dynamic") if name in entry]


# --- expression rendering ------------------------------------------------------------------------------------


def render(value: Any, env: Mapping[str, Any]) -> Any:
    """Substitute references (``var.x``, ``local.y``, ``aws_s3_bucket.this.arn``) known in ``env``.

    A string that is a single reference becomes the referenced value (which may be a list); a reference inside a
    longer string is substituted as text.  ``[for x in list : "..."]`` over a list in ``env`` is expanded.  An
    unknown reference raises KeyError, so a test never silently compares an unrendered expression.
    """
    if isinstance(value, list):
        return [render(item, env) for item in value]
    if isinstance(value, dict):
        return {key: render(item, env) for key, item in value.items()}
    if not isinstance(value, str):
        return value
    whole = _WHOLE_REF.match(value)
    if whole:
        return env[whole.group(1)]
    call = _CALL.match(value)
    if call:
        return _call(call.group(1), call.group(2), env)
    loop = _FOR_LIST.match(value)
    if loop:
        var, source, template = loop.groups()
        return [render(template, {**env, var: item}) for item in env[source]]
    if value.startswith("${") and value.endswith("}"):
        if _CONDITIONAL.match(value):
            return _render_conditional(value, env)
        inner = value[2:-1]
        if "${" not in inner and re.search(r"==|!=|&&|\|\||!", inner):
            return evaluate_condition(inner, env)
    return _EMBEDDED_REF.sub(lambda m: str(env[m.group(1)]), value)


def _call(function: str, arguments: str, env: Mapping[str, Any]) -> Any:
    """The two Terraform functions the tested expressions use, with Terraform's semantics."""
    if function == "jsonencode":
        return json.dumps(_literal(arguments.strip(), env), separators=(",", ":"))
    merged: dict[str, Any] = {}
    for argument in arguments.split(","):
        value = _literal(argument.strip(), env)
        if not isinstance(value, dict):
            raise ValueError(f"merge() argument is not an object: {argument}")
        merged.update(value)  # later arguments win, as in Terraform
    return merged


def _render_conditional(value: str, env: Mapping[str, Any]) -> Any:
    match = _CONDITIONAL.match(value)
    assert match is not None
    condition, if_true, if_false = match.groups()
    chosen = if_true if evaluate_condition(condition, env) else if_false
    return _literal(chosen.strip(), env)


def _literal(text: str, env: Mapping[str, Any]) -> Any:
    if text == "[]":
        return []
    if text == "{}":
        return {}
    obj = _OBJECT.match(text)
    if obj:
        return {obj.group(1): render("${" + obj.group(2) + "}", env)}
    if text.startswith("[") and text.endswith("]"):
        return [_literal(part.strip(), env) for part in text[1:-1].split(",")]
    if text.startswith('"') and text.endswith('"'):
        return render(text[1:-1], env)
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return env[text]


def evaluate_condition(expression: str, env: Mapping[str, Any]) -> bool:
    """Evaluate a boolean HCL expression made of references, literals, ==, !=, !, && and ||."""
    tokens = re.findall(r'"[^"]*"|==|!=|&&|\|\||!|[A-Za-z_][\w.\-]*|\d+|\(|\)', expression)
    python: list[str] = []
    names: dict[str, Any] = {}
    for token in tokens:
        if token in ("==", "!=", "(", ")"):
            python.append(token)
        elif token == "&&":
            python.append(" and ")
        elif token == "||":
            python.append(" or ")
        elif token == "!":
            python.append(" not ")
        else:
            placeholder = f"_v{len(names)}"
            names[placeholder] = _literal(token, env)
            python.append(placeholder)
    return bool(eval("".join(python), {"__builtins__": {}}, names))  # noqa: S307 - tokens are whitelisted above


# --- IAM policy documents ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    sid: str
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...]
    principals: tuple[tuple[str, tuple[str, ...]], ...] = ()


def _expand_dynamic(dynamic: Mapping[str, Any], iterator: str, env: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield (content, env) pairs for a dynamic block: one per element of for_each."""
    for item in render(dynamic["for_each"], env):
        for content in blocks(dynamic, "content"):
            yield {"content": content, "env": {**env, f"{iterator}.value": item}}


def _conditions(body: Mapping[str, Any], env: Mapping[str, Any]) -> list[tuple[str, str, tuple[str, ...]]]:
    found = []
    sources = [(c, env) for c in blocks(body, "condition")]
    for dynamic in dynamic_blocks(body, "condition"):
        sources += [(x["content"], x["env"]) for x in _expand_dynamic(dynamic, "condition", env)]
    for cond, cond_env in sources:
        values = render(cond["values"], cond_env)
        found.append((render(cond["test"], cond_env), render(cond["variable"], cond_env), tuple(values)))
    return found


def _statement(body: Mapping[str, Any], env: Mapping[str, Any]) -> Statement:
    resources = render(body.get("resources", []), env)
    principals = tuple(
        (render(p["type"], env), tuple(render(p["identifiers"], env))) for p in blocks(body, "principals")
    )
    return Statement(
        sid=render(body.get("sid", ""), env),
        effect=render(body.get("effect", "Allow"), env),
        actions=tuple(render(body.get("actions", []), env)),
        resources=tuple(resources if isinstance(resources, list) else [resources]),
        conditions=tuple(_conditions(body, env)),
        principals=principals,
    )


def policy_statements(document: Mapping[str, Any], env: Mapping[str, Any]) -> list[Statement]:
    """Render every statement of an aws_iam_policy_document body, static and dynamic, for ``env``."""
    statements = [_statement(body, env) for body in blocks(document, "statement")]
    for dynamic in dynamic_blocks(document, "statement"):
        statements += [_statement(x["content"], x["env"]) for x in _expand_dynamic(dynamic, "statement", env)]
    return statements


def _condition_holds(test: str, key: str, values: tuple[str, ...], context: Mapping[str, str]) -> bool:
    present = key in context
    if test == "Null":
        return (not present) == (values == ("true",))
    if test.endswith("IfExists") and not present:
        return True
    base = test.removesuffix("IfExists")
    if not present:
        return False
    actual = context[key]
    if base == "Bool":
        return actual.lower() in [v.lower() for v in values]
    if base in ("StringEquals", "ArnEquals"):
        return actual in values
    if base in ("StringLike", "ArnLike"):
        return any(fnmatch.fnmatchcase(actual, v) for v in values)
    raise ValueError(f"condition operator {test} is not supported by this evaluator")


def _matches(statement: Statement, action: str, resource: str, context: Mapping[str, str]) -> bool:
    return (
        any(fnmatch.fnmatchcase(action, pattern) for pattern in statement.actions)
        and any(fnmatch.fnmatchcase(resource, pattern) for pattern in statement.resources)
        and all(_condition_holds(t, k, v, context) for t, k, v in statement.conditions)
    )


def is_allowed(
    statements: list[Statement], action: str, resource: str, context: Mapping[str, str] | None = None
) -> bool:
    """IAM's rule for one identity policy: some Allow matches and no Deny matches."""
    context = context or {}
    matching = [s for s in statements if _matches(s, action, resource, context)]
    return any(s.effect == "Allow" for s in matching) and not any(s.effect == "Deny" for s in matching)


def is_denied(statements: list[Statement], action: str, resource: str, context: Mapping[str, str]) -> bool:
    """Whether an explicit Deny matches (what a bucket policy's deny statements do to any principal)."""
    return any(s.effect == "Deny" and _matches(s, action, resource, context) for s in statements)


def module_env(module: Module, known: Mapping[str, Any], **variables: Any) -> dict[str, Any]:
    """An evaluation environment: variable defaults, overrides, given resource attributes and resolved locals.

    Locals may refer to each other across files in any order, so they are resolved in passes until none
    changes; a local that needs something this evaluator cannot compute (a function call, say) stays absent
    and any use of it raises KeyError.
    """
    env: dict[str, Any] = {f"var.{name}": value for name, value in module.variable_defaults().items()}
    env.update({f"var.{name}": value for name, value in variables.items()})
    env.update(known)
    pending = dict(module.locals())
    while pending:
        progressed = False
        for name, expression in list(pending.items()):
            try:
                env[f"local.{name}"] = render(expression, env)
            except (KeyError, ValueError, SyntaxError, NameError, TypeError):
                continue
            del pending[name]
            progressed = True
        if not progressed:
            break
    return env
