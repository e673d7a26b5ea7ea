package manifests

// strippedMetadata are the metadata fields the API server owns; a restore
// must not send them (docs/format.md §6.1).
var strippedMetadata = []string{
	"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
	"selfLink", "deletionTimestamp", "deletionGracePeriodSeconds",
}

// Strip removes from obj, an object of resource in group as the API
// server returned it, the server-owned metadata, its status, and for a
// Service its allocated ClusterIPs (unless headless), as Velero's Service
// restore does. It changes obj in place.
func Strip(group, resource string, obj map[string]any) {
	if md, ok := obj["metadata"].(map[string]any); ok {
		for _, f := range strippedMetadata {
			delete(md, f)
		}
	}
	delete(obj, "status")
	if group == "" && resource == "services" {
		spec, ok := obj["spec"].(map[string]any)
		if !ok {
			return
		}
		if ip, _ := spec["clusterIP"].(string); ip != "None" {
			delete(spec, "clusterIP")
			delete(spec, "clusterIPs")
		}
	}
}

// ClusterScope is the namespace segment of a cluster-scoped object's path.
const ClusterScope = "_cluster"

// MemberPath is the tar path of an object:
// <group|core>/<version>/<resource>/<namespace|_cluster>/<name>.yaml.
func MemberPath(group, version, resource, namespace, name string) string {
	if group == "" {
		group = "core"
	}
	if namespace == "" {
		namespace = ClusterScope
	}
	return group + "/" + version + "/" + resource + "/" + namespace + "/" + name + ".yaml"
}
