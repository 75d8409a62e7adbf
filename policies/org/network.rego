# Org rules on the network allowlist.
package aibox.org

# Hosts that serve the LLM gateway; their entries need a capped rate limit.
llm_gateway_hosts := {"foundry.internal"}

max_llm_requests_per_min := 600

max_llm_tokens_per_min := 1000000

deny contains msg if {
	not input.policy.network.mode == "deny-by-default"
	mode := object.get(input.policy.network, "mode", "unset")
	msg := sprintf("network.mode is %v: only deny-by-default is allowed", [mode])
}

deny contains msg if {
	some entry in input.policy.network.allow
	some host in entry.hosts
	contains(host, "*")
	msg := sprintf("network.allow[%s]: wildcard host %q is not allowed; list each host by name", [entry.id, host])
}

deny contains msg if {
	some entry in input.policy.network.allow
	llm_gateway(entry)
	not has_number(object.get(entry, "rate_limit", null), "requests_per_min")
	msg := sprintf("network.allow[%s]: the LLM gateway needs rate_limit.requests_per_min", [entry.id])
}

deny contains msg if {
	some entry in input.policy.network.allow
	llm_gateway(entry)
	not has_number(object.get(entry, "rate_limit", null), "tokens_per_min")
	msg := sprintf("network.allow[%s]: the LLM gateway needs rate_limit.tokens_per_min", [entry.id])
}

deny contains msg if {
	some entry in input.policy.network.allow
	llm_gateway(entry)
	entry.rate_limit.requests_per_min > max_llm_requests_per_min
	msg := sprintf(
		"network.allow[%s]: rate_limit.requests_per_min %v is above the org cap of %v",
		[entry.id, entry.rate_limit.requests_per_min, max_llm_requests_per_min],
	)
}

deny contains msg if {
	some entry in input.policy.network.allow
	llm_gateway(entry)
	entry.rate_limit.tokens_per_min > max_llm_tokens_per_min
	msg := sprintf(
		"network.allow[%s]: rate_limit.tokens_per_min %v is above the org cap of %v",
		[entry.id, entry.rate_limit.tokens_per_min, max_llm_tokens_per_min],
	)
}

llm_gateway(entry) if {
	some host in entry.hosts
	host in llm_gateway_hosts
}

# Whether ``value`` is an object whose ``key`` holds a number.
has_number(value, key) if is_number(value[key])
