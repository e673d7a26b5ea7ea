package catalog

// Skips returns the manifest-level skips of a manifests export: one per
// skipped resource, {Source: "manifests", Reason: "<resource>: <reason>"},
// so that any resource not exported makes the backup partial.
func (x *Manifests) Skips() []Skip {
	if x == nil {
		return nil
	}
	out := make([]Skip, 0, len(x.Skipped))
	for _, s := range x.Skipped {
		out = append(out, Skip{Source: SourceManifests, Reason: s.Resource + ": " + s.Reason})
	}
	return out
}

// podSecurityLabelPrefix is the prefix of the Pod Security Admission
// labels a Namespace policy object records.
const podSecurityLabelPrefix = "pod-security.kubernetes.io/"
