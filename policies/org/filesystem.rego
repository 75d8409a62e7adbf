# Org rules on what the sandbox may see of the host.
package aibox.org

# Credential stores that no policy level may expose to a sandbox.
baseline_deny_paths := {
	"~/.ssh",
	"~/.aws",
	"~/.config/gcloud",
	"~/.kube",
	"~/.docker",
	"~/.gnupg",
	"~/.netrc",
	"~/.git-credentials",
}

deny contains msg if {
	some path in baseline_deny_paths
	not path in {denied | some denied in input.policy.filesystem.deny}
	msg := sprintf("filesystem.deny is missing the baseline path %q", [path])
}

deny contains msg if {
	input.policy.filesystem.workspace_root == "/"
	msg := "filesystem.workspace_root must not be /"
}
