package vault

import (
	"net/http"
	"time"

	"github.com/hashicorp/vault/api"
)

// NewAPIClient returns a Vault API client for address that uses only what
// it is given: hc, or when nil an HTTP client that verifies certificates
// against the system roots, uses no proxy and follows no redirects (Vault's
// default client would read VAULT_SKIP_VERIFY, VAULT_CACERT,
// VAULT_PROXY_ADDR and friends); no token, namespace or headers from the
// environment; a 60s timeout on each non-streaming request; and no
// automatic retries. The caller sets the token. internal/source/vault and
// internal/scratch/vault use it too.
func NewAPIClient(address string, hc *http.Client) (*api.Client, error) {
	if hc == nil {
		hc = cleanHTTPClient()
	}
	client, err := api.NewClient(&api.Config{
		Address:    address,
		HttpClient: hc,
		Timeout:    60 * time.Second,
		// No automatic retries: a retried rotate whose first answer was
		// lost would add two key versions.
		MaxRetries: 0,
	})
	if err != nil {
		return nil, err
	}
	// NewClient picks up VAULT_TOKEN, VAULT_NAMESPACE and VAULT_HEADERS from
	// the environment; callers use only what they pass.
	client.ClearToken()
	client.ClearNamespace()
	client.SetHeaders(http.Header{api.RequestHeaderName: []string{"true"}})
	return client, nil
}
