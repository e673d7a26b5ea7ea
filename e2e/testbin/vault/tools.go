//go:build tools

// Package tools pins the Vault server the tests start.
package tools

import _ "github.com/hashicorp/vault"
