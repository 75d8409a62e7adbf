"""`aibox policy` commands: validate, show, check, verify-log, explain."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import click

from aibox.cli.common import (
    AppContext,
    out,
    pass_app,
    print_json,
    printable,
    workspace_option,
)
from aibox.errors import EXIT_FAILURE, AiboxError, UsageError
from aibox.policy import decisions
from aibox.policy.effective import (
    EffectivePolicy,
    PolicyReport,
    build_effective,
    check_policy,
    compute_effective_policy,
)
from aibox.policy.explain import explain_record
from aibox.policy.hierarchy import load_levels
from aibox.policy.provenance import flatten
from aibox.policy.tools import decide

_log_option = click.option(
    "--log",
    "log_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Decision log to read instead of the default decisions.jsonl.",
)


@click.group("policy")
def policy_group() -> None:
    """Check, show and explain the effective policy and its decisions."""


@policy_group.command("validate")
@workspace_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def validate_command(app: AppContext, workspace: Path, as_json: bool) -> int:
    """Merge the policy levels, check them with OPA and list every violation."""
    report = check_policy(app.config, workspace)
    effective = report.effective
    valid = not report.violations
    _record_validation(app, workspace, report)

    if as_json:
        print_json(
            {
                "valid": valid,
                "hash": effective.hash,
                "sources": list(effective.sources),
                "summary": _summary(effective),
                "loosenings": list(report.loosenings),
                "denials": list(report.denials),
                "violations": list(report.violations),
            }
        )
        return 0 if valid else EXIT_FAILURE
    out.print(f"Effective policy hash: {effective.hash}", markup=False)
    for level, source in zip(effective.levels, effective.sources, strict=True):
        out.print(f"  {level:<8} {source}", markup=False)
    for key, value in _summary(effective).items():
        out.print(f"{key}: {value}", markup=False)
    if valid:
        out.print("Policy is valid.", markup=False)
        return 0
    out.print(f"{len(report.violations)} violation(s):", markup=False)
    for violation in report.violations:
        out.print(f"  - {violation}", markup=False)
    return EXIT_FAILURE


def _record_validation(app: AppContext, workspace: Path, report: PolicyReport) -> None:
    valid = not report.violations
    decisions.record_decision(
        "policy_validate",
        user=getpass.getuser(),
        workspace=str(workspace.resolve()),
        sandbox_id=None,
        image=app.config.image,
        policy_hash=report.effective.hash,
        input={"sources": list(report.effective.sources)},
        decision="allow" if valid else "deny",
        rule="policy.hierarchy" if valid else "policy.violations",
        reason="the effective policy passed every check"
        if valid
        else "; ".join(report.violations),
    )


def _summary(effective: EffectivePolicy) -> dict[str, Any]:
    policy = effective.policy
    return {
        "services": ", ".join(
            f"{entry.id} ({', '.join(entry.hosts or ())})"
            for entry in effective.allowlist
        )
        or "none",
        "runtime": f"{effective.engine}, rootless={effective.rootless}, "
        f"require_apparmor={effective.require_apparmor}",
        "tool rules": len(policy.tools.rules or ()),
        "default tool risk": policy.tools.default,
        "deny paths": len(policy.filesystem.deny or ()),
    }


@policy_group.command("show")
@workspace_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print values and levels as JSON."
)
@pass_app
def show_command(app: AppContext, workspace: Path, as_json: bool) -> int:
    """Print the effective policy and the level each value came from."""
    effective, loosenings = build_effective(load_levels(app.config, workspace))
    values = flatten(effective.policy.model_dump(mode="json"))
    if as_json:
        print_json(
            {
                "hash": effective.hash,
                "sources": list(effective.sources),
                "values": {
                    path: {"value": value, "level": effective.origins.get(path)}
                    for path, value in values.items()
                },
                "loosenings": loosenings,
            }
        )
        return 0
    out.print(f"# effective policy {effective.hash}", markup=False)
    for level, source in zip(effective.levels, effective.sources, strict=True):
        out.print(f"# {level}: {source}", markup=False)
    width = max(len(path) for path in values)
    for path, value in values.items():
        level = effective.origins.get(path, "default")
        text = "unset" if value is None else value
        out.print(f"{path:<{width}}  {text}  [{level}]", markup=False)
    for loosening in loosenings:
        out.print(f"# ignored: {loosening}", markup=False)
    return 0


@policy_group.command("check", context_settings={"ignore_unknown_options": True})
@workspace_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_app
def check_command(app: AppContext, workspace: Path, command: tuple[str, ...]) -> int:
    """Decide whether COMMAND may run: aibox policy check -- CMD ARGS..."""
    effective = compute_effective_policy(app.config, workspace)
    policy = effective.policy
    result = decide(
        policy.tools.rules or (), policy.tools.default or "review-required", command
    )
    reason = (
        f"matched {result.rule} with risk {result.risk}"
        if result.matched
        else f"no rule matched; the default risk is {result.risk}"
    )
    record = decisions.record_decision(
        "tool_check",
        user=getpass.getuser(),
        workspace=str(workspace.resolve()),
        sandbox_id=None,
        image=app.config.image,
        policy_hash=effective.hash,
        input={"command": list(command)},
        decision=result.decision,
        rule=result.rule,
        reason=reason,
    )
    out.print(f"{result.decision}: {printable(' '.join(command))}", markup=False)
    out.print(f"rule: {result.rule} (risk {result.risk})", markup=False)
    if result.decision == "review":
        out.print(
            f"Notice: this command needs review; decision record {record['seq']} "
            "marks it for review.",
            markup=False,
        )
    elif result.decision == "deny":
        out.print(
            f"Blocked. See 'aibox policy explain --log-entry {record['seq']}' for how "
            "to ask for an exception.",
            markup=False,
        )
    return result.exit_code


@policy_group.command("verify-log")
@_log_option
def verify_log_command(log_path: Path | None) -> int:
    """Check the decision log's hash chain across rotated files."""
    if log_path is not None and not log_path.exists():
        raise UsageError(
            f"decision log not found: {log_path}",
            hint="Pass the path of an existing decisions.jsonl with --log.",
        )
    result = decisions.verify_log(decisions.open_log(log_path))
    if result.ok:
        out.print(
            f"Decision log is intact: {result.count} record(s) in "
            f"{len(result.files)} file(s).",
            markup=False,
        )
        return 0
    for problem in result.problems:
        out.print(f"Tampering detected: {problem}", markup=False)
    out.print(f"{result.count} record(s) verified before the problem.", markup=False)
    return EXIT_FAILURE


@policy_group.command("explain")
@click.option("--log-entry", "entry", type=click.IntRange(min=1), help="Sequence id.")
@click.option("--last", is_flag=True, help="Explain the newest record.")
@_log_option
def explain_command(entry: int | None, last: bool, log_path: Path | None) -> int:
    """Describe one decision record in plain words."""
    if (entry is None) == (not last):
        raise UsageError(
            "give exactly one of --log-entry N and --last",
            hint="For example: aibox policy explain --last",
        )
    decision_log = decisions.open_log(log_path)
    record = decision_log.last_record() if last else decision_log.find(entry or 0)
    if record is None:
        requested = "any record" if last else f"record {entry}"
        raise AiboxError(
            f"decision log {decision_log.path} has no {requested}",
            hint="List the log with 'tail decisions.jsonl' or run 'aibox start' first.",
        )
    out.print(printable(explain_record(record)), markup=False)
    return 0


def register(cli: click.Group) -> None:
    """Add this module's commands to the top-level group."""
    cli.add_command(policy_group)
