// Package deploy holds no code: it is the home of the test that proves
// deploy/base against a real kube-apiserver (deploy_test.go). The
// manifests themselves are kustomize files beside it; `kubectl apply -k
// deploy/base` installs lifeboat as an in-cluster service (docs/install.md).
package deploy
