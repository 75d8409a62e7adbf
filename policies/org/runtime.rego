# Org rules on the container runtime.
package aibox.org

# Classifications whose workloads must run under gVisor.
classified := {"confidential", "restricted"}

deny contains msg if {
	not input.policy.runtime.rootless == true
	msg := "runtime.rootless must be true: sandboxes run rootless"
}

deny contains msg if {
	input.policy.classification in classified
	not input.policy.runtime.engine == "gvisor"
	engine := object.get(input.policy.runtime, "engine", "unset")
	msg := sprintf(
		"runtime.engine is %v but %v workloads require gvisor",
		[engine, input.policy.classification],
	)
}
