# Org rules on credential lifetimes and on the LLM request size.
package aibox.org

max_ttl_seconds := 28800 # 8h

max_renewal_seconds := 86400 # 24h

max_llm_request_bytes := 33554432 # 32Mi

deny contains msg if {
	not has_number(object.get(input.policy, "credentials", null), "ttl")
	msg := "credentials.ttl must be set"
}

deny contains msg if {
	input.policy.credentials.ttl > max_ttl_seconds
	msg := sprintf("credentials.ttl %vs is above the org cap of %vs (8h)", [input.policy.credentials.ttl, max_ttl_seconds])
}

deny contains msg if {
	input.policy.credentials.max_ttl > max_renewal_seconds
	msg := sprintf(
		"credentials.max_ttl %vs is above the org cap of %vs (24h)",
		[input.policy.credentials.max_ttl, max_renewal_seconds],
	)
}

deny contains msg if {
	input.policy.credentials.ttl > input.policy.credentials.max_ttl
	msg := sprintf(
		"credentials.ttl %vs is above credentials.max_ttl %vs",
		[input.policy.credentials.ttl, input.policy.credentials.max_ttl],
	)
}

deny contains msg if {
	not input.policy.credentials.revoke_on_stop == true
	msg := "credentials.revoke_on_stop must be true"
}

deny contains msg if {
	input.policy.llm.max_request_bytes > max_llm_request_bytes
	msg := sprintf(
		"llm.max_request_bytes %v is above the org cap of %v (32Mi)",
		[input.policy.llm.max_request_bytes, max_llm_request_bytes],
	)
}
