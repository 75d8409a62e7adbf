"""Acceptance points 1 and 2: the test suites and host setup.

Tests run in file order and share one world (see ``conftest.py``); the modules
are numbered so that setup runs before the sandbox points.
"""

from __future__ import annotations

import re
import shutil

import pytest

from tests.e2e.conftest import REPOSITORY, World, describe, run
from tests.e2e.points import snapshot_system, snapshot_user, write_user_config

pytestmark = [pytest.mark.e2e, pytest.mark.root]


def test_p01_opa_policy_tests_pass() -> None:
    opa = shutil.which("opa") or "/opt/aibox/bin/opa"
    result = run([opa, "test", str(REPOSITORY / "policies"), "-v"], timeout=300)

    assert result.returncode == 0, describe(result)
    passed = re.findall(r": PASS \(", result.stdout)
    failed = re.findall(r": (?:FAIL|ERROR) \(", result.stdout)
    assert not failed, describe(result)
    assert len(passed) >= 34, f"only {len(passed)} Rego tests passed:\n{result.stdout}"


def test_p02_setup_system_and_user_idempotent(world: World) -> None:
    first = world.aibox_root("setup", "--system")
    assert first.returncode == 0, describe(first)
    joined = run(["usermod", "--append", "--groups", "aibox", world.user])
    assert joined.returncode == 0, describe(joined)
    settled = world.aibox_root("setup", "--system")
    assert settled.returncode == 0, describe(settled)
    before = snapshot_system(world)

    again = world.aibox_root("setup", "--system")

    assert again.returncode == 0, describe(again)
    assert snapshot_system(world) == before, "a second 'setup --system' changed state"
    assert before["ruleset"], "setup --system loaded no nftables table inet abxe2e"

    user_first = world.aibox("setup")
    assert user_first.returncode == 0, describe(user_first)
    assert "system setup has not been done" not in user_first.stderr
    assert world.user_config.is_file(), "aibox setup wrote no config file"
    user_before = snapshot_user(world)
    user_again = world.aibox("setup")

    assert user_again.returncode == 0, describe(user_again)
    assert snapshot_user(world) == user_before, "a second 'aibox setup' changed state"
    assert f"aibox-{world.user}-home" in user_before["volumes"]
    write_user_config(world)
    stored = world.aibox(
        "auth", "add", "llm-api-key", "--stdin", input_text=world.llm_key
    )
    assert stored.returncode == 0, describe(stored)
    assert world.llm_key not in stored.stdout + stored.stderr
