package aibox.org_test

import data.aibox.org

test_rootless_false_denied if {
	"runtime.rootless must be true: sandboxes run rootless" in org.deny with input as with_patch({"runtime": {"rootless": false}})
}

test_rootless_missing_denied if {
	policy := json.remove(valid_policy, ["runtime/rootless"])
	"runtime.rootless must be true: sandboxes run rootless" in org.deny with input as {"policy": policy}
}

test_confidential_runc_denied if {
	patch := {"classification": "confidential", "runtime": {"engine": "runc"}}
	"runtime.engine is runc but confidential workloads require gvisor" in org.deny with input as with_patch(patch)
}

test_restricted_runc_denied if {
	patch := {"classification": "restricted", "runtime": {"engine": "runc"}}
	count(org.deny) == 1 with input as with_patch(patch)
}

test_restricted_without_engine_denied if {
	policy := json.remove(object.union(valid_policy, {"classification": "restricted"}), ["runtime/engine"])
	"runtime.engine is unset but restricted workloads require gvisor" in org.deny with input as {"policy": policy}
}

test_internal_runc_allowed if {
	count(org.deny) == 0 with input as with_patch({"runtime": {"engine": "runc"}})
}

test_restricted_gvisor_allowed if {
	count(org.deny) == 0 with input as with_patch({"classification": "restricted"})
}
