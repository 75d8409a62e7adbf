package aibox.org_test

import data.aibox.org

rules_without(tool) := [rule |
	some rule in valid_policy.tools.rules
	rule.match != [tool]
]

test_curl_unblocked_denied if {
	msg := "tools.rules must block \"curl\": add {match: [curl], risk: blocked-by-default}"
	msg in org.deny with input as with_patch({"tools": {"rules": rules_without("curl")}})
}

test_nc_unblocked_denied if {
	count(org.deny) == 1 with input as with_patch({"tools": {"rules": rules_without("nc")}})
}

test_no_rules_reports_every_tool if {
	count(org.deny) == 5 with input as with_patch({"tools": {"rules": []}})
}

test_curl_marked_safe_denied if {
	rules := array.concat(rules_without("curl"), [{"match": ["curl"], "allow": true, "risk": "safe"}])
	count(org.deny) == 1 with input as with_patch({"tools": {"rules": rules}})
}

test_curl_with_arguments_only_denied if {
	rule := {"match": ["curl", "*"], "allow": false, "risk": "blocked-by-default"}
	rules := array.concat(rules_without("curl"), [rule])
	count(org.deny) == 1 with input as with_patch({"tools": {"rules": rules}})
}

test_allow_false_counts_as_blocked if {
	rules := array.concat(rules_without("wget"), [{"match": ["wget"], "allow": false, "risk": "review-required"}])
	count(org.deny) == 0 with input as with_patch({"tools": {"rules": rules}})
}

test_default_safe_denied if {
	"tools.default must not be safe: unmatched commands need at least review-required" in org.deny with input as with_patch({"tools": {"default": "safe"}})
}

test_default_blocked_allowed if {
	count(org.deny) == 0 with input as with_patch({"tools": {"default": "blocked-by-default"}})
}
