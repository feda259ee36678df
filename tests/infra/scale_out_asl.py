"""Render terraform/modules/scale-out/state-machine.asl.json the way Terraform's ``templatefile`` does.

Shared by the static ASL tests (tests/infra/test_scale_out.py) and the LocalStack Step Functions run
(tests/serverless/test_scale_out_localstack.py), so both check the very definition the module deploys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from .terraform_hcl import MODULES_DIR

MODULE_DIR = MODULES_DIR / "scale-out"
TEMPLATE = MODULE_DIR / "state-machine.asl.json"

_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
_NAME = re.compile(r"^[A-Za-z_]\w*$")


def template_variables(text: str | None = None) -> set[str]:
    """The names the template interpolates (``$${`` is templatefile's escape for a literal ``${``)."""
    text = TEMPLATE.read_text(encoding="utf-8") if text is None else text
    return {m.group(1) for m in _INTERPOLATION.finditer(text.replace("$${", "\0"))}


def render_template(values: Mapping[str, Any], text: str | None = None) -> str:
    """templatefile(): every ``${name}`` becomes ``str(value)``; an unknown name or an expression raises.

    Numbers are substituted as Terraform prints them (integers without a decimal point); strings verbatim, so a
    value that would break the JSON breaks it here too.
    """
    text = TEMPLATE.read_text(encoding="utf-8") if text is None else text
    if "%{" in text:
        raise ValueError("template directives are not used by this template and not modelled here")

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if not _NAME.match(name):
            raise ValueError(f"template expression {name!r} is not a plain variable")
        if name not in values:
            raise KeyError(f"templatefile: vars map does not contain key {name!r}")
        value = values[name]
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    parts = text.split("$${")
    return "${".join(_INTERPOLATION.sub(substitute, part) for part in parts)


def render_definition(values: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(render_template(values))


def all_states(definition: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, str, dict[str, Any], dict]]:
    """(path, name, state, the States block it belongs to) for every state, nested ItemProcessors included."""
    states = definition["States"]
    for name, state in states.items():
        yield path, name, state, states
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from all_states(state[key], f"{path}{name}/")
        for index, branch in enumerate(state.get("Branches", [])):
            yield from all_states(branch, f"{path}{name}[{index}]/")
