package aibox.org_test

import data.aibox.org

test_ttl_above_cap_denied if {
	"credentials.ttl 28801s is above the org cap of 28800s (8h)" in org.deny with input as with_patch({"credentials": {"ttl": 28801}})
}

test_ttl_at_cap_allowed if {
	count(org.deny) == 0 with input as with_patch({"credentials": {"ttl": 28800}})
}

test_ttl_missing_denied if {
	"credentials.ttl must be set" in org.deny with input as with_patch({"credentials": {"ttl": null}})
}

test_max_ttl_above_cap_denied if {
	"credentials.max_ttl 90000s is above the org cap of 86400s (24h)" in org.deny with input as with_patch({"credentials": {"max_ttl": 90000}})
}

test_ttl_above_max_ttl_denied if {
	patch := {"credentials": {"ttl": 7200, "max_ttl": 3600}}
	"credentials.ttl 7200s is above credentials.max_ttl 3600s" in org.deny with input as with_patch(patch)
}

test_revoke_on_stop_false_denied if {
	"credentials.revoke_on_stop must be true" in org.deny with input as with_patch({"credentials": {"revoke_on_stop": false}})
}

test_revoke_on_stop_missing_denied if {
	policy := json.remove(valid_policy, ["credentials/revoke_on_stop"])
	"credentials.revoke_on_stop must be true" in org.deny with input as {"policy": policy}
}

test_llm_request_size_above_cap_denied if {
	"llm.max_request_bytes 33554433 is above the org cap of 33554432 (32Mi)" in org.deny with input as with_patch({"llm": {"max_request_bytes": 33554433}})
}

test_llm_request_size_unset_allowed if {
	count(org.deny) == 0 with input as with_patch({"llm": {"max_request_bytes": null}})
}
