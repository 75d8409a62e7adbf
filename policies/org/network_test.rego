package aibox.org_test

import data.aibox.org

gateway := valid_policy.network.allow[1]

test_wildcard_host_denied if {
	entry := object.union(valid_policy.network.allow[0], {"hosts": ["*.internal"]})
	"network.allow[harbor]: wildcard host \"*.internal\" is not allowed; list each host by name" in org.deny with input as with_entry(0, entry)
}

test_wildcard_in_second_host_denied if {
	entry := object.union(valid_policy.network.allow[0], {"hosts": ["harbor.internal", "cdn*.internal"]})
	count(org.deny) == 1 with input as with_entry(0, entry)
}

test_named_hosts_allowed if {
	entry := object.union(valid_policy.network.allow[0], {"hosts": ["a.internal", "b.internal"]})
	count(org.deny) == 0 with input as with_entry(0, entry)
}

test_mode_other_than_deny_denied if {
	"network.mode is allow-all: only deny-by-default is allowed" in org.deny with input as with_patch({"network": {"mode": "allow-all"}})
}

test_missing_mode_denied if {
	policy := json.remove(valid_policy, ["network/mode"])
	"network.mode is unset: only deny-by-default is allowed" in org.deny with input as {"policy": policy}
}

test_gateway_without_rate_limit_denied if {
	entry := object.union(gateway, {"rate_limit": null})
	count(org.deny) == 2 with input as with_entry(1, entry)
}

test_gateway_without_requests_limit_denied if {
	entry := object.union(gateway, {"rate_limit": {"requests_per_min": null}})
	"network.allow[foundry]: the LLM gateway needs rate_limit.requests_per_min" in org.deny with input as with_entry(1, entry)
}

test_gateway_without_tokens_limit_denied if {
	entry := json.remove(gateway, ["rate_limit/tokens_per_min"])
	"network.allow[foundry]: the LLM gateway needs rate_limit.tokens_per_min" in org.deny with input as with_entry(1, entry)
}

test_gateway_requests_above_cap_denied if {
	entry := object.union(gateway, {"rate_limit": {"requests_per_min": 601}})
	"network.allow[foundry]: rate_limit.requests_per_min 601 is above the org cap of 600" in org.deny with input as with_entry(1, entry)
}

test_gateway_tokens_above_cap_denied if {
	entry := object.union(gateway, {"rate_limit": {"tokens_per_min": 1000001}})
	"network.allow[foundry]: rate_limit.tokens_per_min 1000001 is above the org cap of 1000000" in org.deny with input as with_entry(1, entry)
}

test_gateway_at_caps_allowed if {
	entry := object.union(gateway, {"rate_limit": {"requests_per_min": 600, "tokens_per_min": 1000000}})
	count(org.deny) == 0 with input as with_entry(1, entry)
}

test_gateway_found_by_host_not_id if {
	entry := {"id": "llm", "hosts": ["foundry.internal"], "ports": [443], "rate_limit": null}
	count(org.deny) == 2 with input as with_entry(0, entry)
}

test_other_service_needs_no_rate_limit if {
	entry := object.union(valid_policy.network.allow[2], {"rate_limit": null})
	count(org.deny) == 0 with input as with_entry(2, entry)
}

test_empty_allowlist_allowed if {
	count(org.deny) == 0 with input as with_patch({"network": {"allow": []}})
}
