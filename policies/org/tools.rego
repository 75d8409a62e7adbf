# Org rules on the tool permission model.
package aibox.org

# Network tools that must stay blocked for every invocation.
blocked_network_tools := {"curl", "wget", "ssh", "scp", "nc"}

deny contains msg if {
	some tool in blocked_network_tools
	not blocks_every_invocation(tool)
	msg := sprintf("tools.rules must block %q: add {match: [%s], risk: blocked-by-default}", [tool, tool])
}

deny contains msg if {
	input.policy.tools.default == "safe"
	msg := "tools.default must not be safe: unmatched commands need at least review-required"
}

# A one-token rule matches every invocation of the tool, whatever its arguments.
blocks_every_invocation(tool) if {
	some rule in input.policy.tools.rules
	rule.match == [tool]
	rule.allow == false
}

blocks_every_invocation(tool) if {
	some rule in input.policy.tools.rules
	rule.match == [tool]
	rule.risk == "blocked-by-default"
}
