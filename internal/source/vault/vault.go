package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"

	"github.com/hashicorp/vault/api"

	keysvault "github.com/lifeboat-dr/lifeboat/internal/keys/vault"
)

// DefaultTransitMount is the transit mount when Options and the plan name
// none.
const DefaultTransitMount = "transit"

// ErrPermissionDenied is wrapped by errors for requests Vault refused with
// 403.
var ErrPermissionDenied = errors.New("permission denied")

// ErrNotBackupable is wrapped when a transit key is not exportable, does
// not allow plaintext backup, or cannot encrypt.
var ErrNotBackupable = errors.New("transit key cannot be backed up")

// ErrNotRaft is wrapped when a raft snapshot is asked of a server that does
// not use integrated storage.
var ErrNotRaft = errors.New("vault does not use integrated storage (raft)")

// ErrNotKV2 is wrapped when a KV path is not on a KV version 2 mount.
var ErrNotKV2 = errors.New("not a KV version 2 mount")

// Options say how to reach Vault.
type Options struct {
	// Address is Vault's URL. Required: VAULT_ADDR is not read here.
	Address string
	// Token is the Vault token, used when TokenFile is empty.
	Token string
	// TokenFile is a file holding the token; it is read once, and
	// surrounding white space is trimmed.
	TokenFile string
	// HTTPClient is the HTTP client; nil means keys/vault's clean client.
	HTTPClient *http.Client
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Client takes backups from one Vault server.
type Client struct {
	c    *api.Client
	addr string
	log  *slog.Logger
}

// New returns a client for opts.Address with the token of opts.
func New(opts Options) (*Client, error) {
	if opts.Address == "" {
		return nil, errors.New("vault: no address: set the source's address or VAULT_ADDR")
	}
	token := opts.Token
	if opts.TokenFile != "" {
		b, err := os.ReadFile(opts.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("vault %s: read token file %s: %w", opts.Address, opts.TokenFile, err)
		}
		token = strings.TrimSpace(string(b))
		clear(b)
		if token == "" {
			return nil, fmt.Errorf("vault %s: token file %s is empty", opts.Address, opts.TokenFile)
		}
	}
	if token == "" {
		return nil, fmt.Errorf("vault %s: no token: set the source's tokenFile or VAULT_TOKEN", opts.Address)
	}
	c, err := keysvault.NewAPIClient(opts.Address, opts.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("vault %s: client: %v", opts.Address, err)
	}
	c.SetToken(token)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{c: c, addr: opts.Address, log: log.With("vault", opts.Address)}, nil
}

// API returns the Vault API client, for restores that write (Transit,
// RestoreKV).
func (c *Client) API() *api.Client { return c.c }

// Address returns the server's URL.
func (c *Client) Address() string { return c.addr }

var (
	mountSegRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	keyNameRE  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
)

// cleanMount checks a mount path and returns it without surrounding "/".
func cleanMount(mount string) (string, error) {
	m := strings.Trim(mount, "/")
	if m == "" {
		return "", errors.New("empty mount")
	}
	for _, seg := range strings.Split(m, "/") {
		if !mountSegRE.MatchString(seg) {
			return "", fmt.Errorf("invalid mount %q", mount)
		}
	}
	return m, nil
}

// opErr turns an error of a Vault request into one naming the server, the
// step and what it was about. It uses Vault's status code and error
// messages only, never a request or response body.
func (c *Client) opErr(step, what string, err error) error {
	return apiError(c.addr, step, what, err)
}

func apiError(addr, step, what string, err error) error {
	prefix := fmt.Sprintf("vault %s: %s %s", addr, step, what)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		ce := context.Canceled
		if errors.Is(err, context.DeadlineExceeded) {
			ce = context.DeadlineExceeded
		}
		return fmt.Errorf("%s: %w", prefix, ce)
	}
	var re *api.ResponseError
	if !errors.As(err, &re) {
		return fmt.Errorf("%s: %v", prefix, err)
	}
	msg := VaultMessage(re)
	if re.StatusCode == http.StatusForbidden {
		if msg == "" || strings.EqualFold(msg, "permission denied") {
			return fmt.Errorf("%s: %w (Vault answered 403)", prefix, ErrPermissionDenied)
		}
		return fmt.Errorf("%s: %w (Vault answered 403: %s)", prefix, ErrPermissionDenied, msg)
	}
	return fmt.Errorf("%s: Vault answered %d: %s", prefix, re.StatusCode, msg)
}

// VaultMessage returns Vault's error messages of re on one line.
func VaultMessage(re *api.ResponseError) string {
	msg := strings.Join(re.Errors, "; ")
	if re.RawError {
		msg = "unparsable error response"
	}
	return strings.TrimSpace(strings.NewReplacer("\n", " ", "\t", " ", "1 error occurred:", "", "* ", "").Replace(msg))
}

// readBody reads a raw response's body, at most limit bytes, and closes
// it. The caller zeroes the result when it held a secret.
func readBody(resp *api.Response, limit int64) ([]byte, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		clear(b)
		return nil, err
	}
	if int64(len(b)) > limit {
		clear(b)
		return nil, fmt.Errorf("response larger than %d bytes", limit)
	}
	return b, nil
}

// PutRaw PUTs body to path (without "/v1/") and returns the answer's body,
// read whole (at most 64 MiB). The caller zeroes body and the result when
// they hold secrets. On a Vault error the error is Vault's *api.ResponseError.
//
// Logical().WriteRawWithContext is not used: it ends the request's
// context (the client's timeout) as it returns, before the caller can read
// the body, which then fails with "context canceled" when the transport
// streams it, as it does over HTTP/2, which Vault's TLS listener speaks.
func PutRaw(ctx context.Context, c *api.Client, path string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := c.NewRequest(http.MethodPut, "/v1/"+path)
	r.BodyBytes = body
	resp, err := c.RawRequestWithContext(ctx, r) //nolint:staticcheck // see above; the context lives until the body is read
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, err
	}
	return readBody(resp, maxResponse)
}

// DecodeError describes an encoding/json error without quoting what was
// decoded: a syntax error's message holds a character of the input and a
// type error's the offending number, either of which may be part of a
// secret. It keeps the byte offset and, for a type error, the field.
func DecodeError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return fmt.Errorf("malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Errorf("unexpected JSON type for field %q at byte %d", te.Field, te.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return errors.New("JSON cut short")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// Names a field, never a value.
		return errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	return errors.New("malformed JSON")
}

// maxResponse bounds a JSON response read whole: a transit key backup
// holds every version's key, a KV secret is at most Vault's 512 KiB
// default entry size, and then some.
const maxResponse = 64 << 20

// readJSON GETs path and decodes the response into out. Missing (404)
// returns found=false.
func (c *Client) readJSON(ctx context.Context, path string, out any) (found bool, err error) {
	s, err := c.c.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return false, err
	}
	if s == nil {
		return false, nil
	}
	b, err := json.Marshal(s.Data)
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return true, DecodeError(err)
	}
	return true, nil
}
