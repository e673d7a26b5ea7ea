package vault

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// signTimeout bounds one signing request to Vault.
const signTimeout = 30 * time.Second

// NewSigner returns an evidence signer whose Ed25519 key is the transit
// key opts.Key (type ed25519) in Vault: the key never leaves Vault, so the
// host that runs lifeboat cannot sign anything Vault's policy does not let
// its token sign (docs/format.md §5.2). The key's latest version is read
// once, with its public key; every signature asks Vault for that version
// and is checked against that public key. Its KeyID is the usual SHA-256
// of the public key, so `evidence verify --key` takes the public key
// Vault exports (PublicKey, or `lifeboat evidence public-key vault:...`).
func NewSigner(ctx context.Context, opts Options) (*evidence.Signer, error) {
	p, err := newProvider(opts)
	if err != nil {
		return nil, err
	}
	if err := p.loadToken(); err != nil {
		return nil, err
	}
	s, err := p.client.Logical().ReadWithContext(ctx, p.mount+"/keys/"+p.key)
	if err != nil {
		return nil, p.opErr("signer", p.name(), err)
	}
	if s == nil || s.Data == nil {
		return nil, fmt.Errorf("signer %s: no such transit key", p.name())
	}
	if typ, _ := s.Data["type"].(string); typ != "ed25519" {
		return nil, fmt.Errorf("signer %s: the transit key is of type %q; evidence is signed with an ed25519 key (create one with type ed25519)", p.name(), typ)
	}
	latest, err := jsonInt(s.Data["latest_version"])
	if err != nil || latest < 1 {
		return nil, fmt.Errorf("signer %s: unexpected latest_version from Vault", p.name())
	}
	versions, _ := s.Data["keys"].(map[string]any)
	v, _ := versions[strconv.FormatInt(latest, 10)].(map[string]any)
	pubText, _ := v["public_key"].(string)
	pub, err := base64.StdEncoding.DecodeString(pubText)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("signer %s: version %d has no Ed25519 public key in Vault's answer", p.name(), latest)
	}
	sign := func(msg []byte) ([]byte, error) {
		if err := p.loadToken(); err != nil {
			return nil, err
		}
		sctx, cancel := context.WithTimeout(context.Background(), signTimeout)
		defer cancel()
		out, err := p.client.Logical().WriteWithContext(sctx, p.mount+"/sign/"+p.key, map[string]any{
			"input": base64.StdEncoding.EncodeToString(msg), "key_version": latest,
		})
		if err != nil {
			return nil, p.opErr("sign", p.name(), err)
		}
		if out == nil || out.Data == nil {
			return nil, fmt.Errorf("sign %s: empty answer from Vault", p.name())
		}
		text, _ := out.Data["signature"].(string)
		prefix := "vault:v" + strconv.FormatInt(latest, 10) + ":"
		if !strings.HasPrefix(text, prefix) {
			return nil, fmt.Errorf("sign %s: Vault's signature is not of version %d", p.name(), latest)
		}
		sig, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(text, prefix))
		if err != nil {
			return nil, fmt.Errorf("sign %s: Vault's signature is not base64", p.name())
		}
		return sig, nil
	}
	signer, err := evidence.NewRemoteSigner(evidence.Ed25519Key(ed25519.PublicKey(pub)), sign)
	if err != nil {
		return nil, err
	}
	p.log.Info("evidence signer: Vault transit key", "key", p.KeyName(), "version", latest, "keyId", signer.KeyID())
	return signer, nil
}
