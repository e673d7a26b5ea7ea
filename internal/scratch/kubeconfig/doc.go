// Package kubeconfig is the drill scratch provider for an existing
// cluster named by a kubeconfig file and context (a Drill's
// scratch.type: kubeconfig). It restores nothing into etcd: it connects,
// checks the API server answers, and hands the drill a client. The drill
// restores the backup's namespaced objects into namespaces of its own
// (lbdrill-<run>-<namespace>), labels everything it creates with its run,
// and deletes only what carries that label when it ends.
package kubeconfig
