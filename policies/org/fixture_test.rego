# A policy input that passes every org rule; tests change one field at a time.
package aibox.org_test

import data.aibox.org

valid_policy := {
	"version": 1,
	"classification": "internal",
	"network": {
		"mode": "deny-by-default",
		"allow": [
			{"id": "harbor", "hosts": ["harbor.internal"], "ports": [443], "rate_limit": null},
			{
				"id": "foundry", "hosts": ["foundry.internal"], "ports": [443],
				"rate_limit": {"requests_per_min": 60, "tokens_per_min": 200000},
			},
			{"id": "vault", "hosts": ["vault.internal"], "ports": [8200], "rate_limit": null},
		],
	},
	"filesystem": {
		"workspace_root": "/workspace",
		"deny": [
			"/run/podman", "~/.aws", "~/.config/gcloud", "~/.docker", "~/.git-credentials",
			"~/.gnupg", "~/.kube", "~/.netrc", "~/.ssh",
		],
	},
	"tools": {
		"default": "review-required",
		"rules": [
			{"match": ["curl"], "allow": true, "risk": "blocked-by-default"},
			{"match": ["wget"], "allow": true, "risk": "blocked-by-default"},
			{"match": ["ssh"], "allow": true, "risk": "blocked-by-default"},
			{"match": ["scp"], "allow": true, "risk": "blocked-by-default"},
			{"match": ["nc"], "allow": true, "risk": "blocked-by-default"},
			{"match": ["git", "status"], "allow": true, "risk": "safe"},
		],
	},
	"resources": {"cpu": 4, "memory": 8589934592, "disk": null},
	"runtime": {"engine": "gvisor", "rootless": true, "ephemeral": true, "require_apparmor": false},
	"credentials": {"ttl": 28800, "max_ttl": 86400, "revoke_on_stop": true},
	"llm": {"max_request_bytes": 4194304},
}

# The input for a policy with ``patch`` merged over the valid one (lists replaced).
with_patch(patch) := {"policy": object.union(valid_policy, patch)}

# Replace the allowlist entry at ``index`` with ``entry``.
with_entry(index, entry) := {"policy": object.union(valid_policy, {"network": {"allow": [
e |
	some i, original in valid_policy.network.allow
	e := replaced(i, index, original, entry)
]}})}

replaced(i, index, _, entry) := entry if i == index

replaced(i, index, original, _) := original if i != index

test_valid_policy_passes if {
	count(org.deny) == 0 with input as {"policy": valid_policy}
}
