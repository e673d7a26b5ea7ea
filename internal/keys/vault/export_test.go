package vault

import "net/http"

// CleanTransport exposes the default transport's settings to tests.
func CleanTransport() *http.Transport { return cleanHTTPClient().Transport.(*http.Transport) }
