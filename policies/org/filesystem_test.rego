package aibox.org_test

import data.aibox.org

test_missing_ssh_deny_path_denied if {
	deny := [path | some path in valid_policy.filesystem.deny; path != "~/.ssh"]
	"filesystem.deny is missing the baseline path \"~/.ssh\"" in org.deny with input as with_patch({"filesystem": {"deny": deny}})
}

test_empty_deny_list_reports_each_path if {
	count(org.deny) == count(org.baseline_deny_paths) with input as with_patch({"filesystem": {"deny": []}})
}

test_missing_deny_list_reports_each_path if {
	policy := json.remove(valid_policy, ["filesystem/deny"])
	count(org.deny) == 8 with input as {"policy": policy}
}

test_extra_deny_paths_allowed if {
	deny := array.concat(valid_policy.filesystem.deny, ["~/secrets"])
	count(org.deny) == 0 with input as with_patch({"filesystem": {"deny": deny}})
}

test_workspace_root_slash_denied if {
	"filesystem.workspace_root must not be /" in org.deny with input as with_patch({"filesystem": {"workspace_root": "/"}})
}
