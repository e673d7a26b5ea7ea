package awskms

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// signTimeout bounds one signing request to KMS.
const signTimeout = 30 * time.Second

// SignerOptions configure NewSigner.
type SignerOptions struct {
	// Key is the KMS key: key ID, key ARN, alias name ("alias/…") or alias
	// ARN. It must be an asymmetric key of spec ECC_NIST_P256 and usage
	// SIGN_VERIFY.
	Key string
	// Region and Endpoint override the SDK's defaults (AWS_REGION,
	// AWS_ENDPOINT_URL_KMS) when set.
	Region, Endpoint string
	// Credentials overrides the SDK's default credential chain when set.
	Credentials aws.CredentialsProvider
	// HTTPClient overrides the SDK's HTTP client when set.
	HTTPClient *http.Client
	// Logger receives the signer's key ID; nil discards it.
	Logger *slog.Logger
}

// signAPI is the part of the KMS client a signer calls.
type signAPI interface {
	GetPublicKey(context.Context, *kms.GetPublicKeyInput, ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error)
	Sign(context.Context, *kms.SignInput, ...func(*kms.Options)) (*kms.SignOutput, error)
}

// NewSigner returns an evidence signer whose private key is the AWS KMS
// key opts.Key, which never leaves KMS (docs/format.md §5.2): the host that
// runs lifeboat can only ask KMS to sign, as far as the key policy lets its
// credentials, and a compliance team can hold the key policy apart from
// the people who run backups. The key's public key is read once with
// GetPublicKey; the key it names by ARN is the one every signature asks
// for (so moving an alias later does not switch signers mid-run), and each
// signature (ECDSA_SHA_256 over the SHA-256 digest of the record) is
// brought to low s and checked against the public key before it is used.
// The public key KMS exports (`aws kms get-public-key`, or `lifeboat
// evidence public-key awskms:…`) is a valid `--key` file.
func NewSigner(ctx context.Context, opts SignerOptions) (*evidence.Signer, error) {
	if opts.Key == "" {
		return nil, errors.New("awskms signer: no key named")
	}
	c, err := newClient(ctx, opts.Region, opts.Endpoint, opts.Credentials, opts.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("awskms signer %s: %w", opts.Key, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return newSigner(ctx, c, opts.Key, log)
}

func newSigner(ctx context.Context, c signAPI, key string, log *slog.Logger) (*evidence.Signer, error) {
	name := ProviderType + ":" + key
	out, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(key)})
	if isCode(err, "UnsupportedOperationException") {
		return nil, fmt.Errorf("awskms signer %s: %s: not an asymmetric key; evidence needs a SIGN_VERIFY key of spec ECC_NIST_P256", name, kmsReason(err))
	}
	if err != nil {
		return nil, signErr("get public key", name, err)
	}
	if out.KeyUsage != types.KeyUsageTypeSignVerify {
		return nil, fmt.Errorf("awskms signer %s: the key's usage is %s; evidence needs a SIGN_VERIFY key of spec ECC_NIST_P256", name, out.KeyUsage)
	}
	if out.KeySpec != types.KeySpecEccNistP256 {
		return nil, fmt.Errorf("awskms signer %s: the key's spec is %s; evidence is signed with ECC_NIST_P256 (ECDSA_SHA_256), as AWS KMS has no Ed25519", name, out.KeySpec)
	}
	if !slices.Contains(out.SigningAlgorithms, types.SigningAlgorithmSpecEcdsaSha256) {
		return nil, fmt.Errorf("awskms signer %s: the key does not offer ECDSA_SHA_256", name)
	}
	parsed, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("awskms signer %s: KMS returned a public key that does not parse: %w", name, err)
	}
	pub, err := evidence.NewPublicKey(parsed)
	if err != nil {
		return nil, fmt.Errorf("awskms signer %s: %w", name, err)
	}
	arn := aws.ToString(out.KeyId)
	if arn == "" {
		return nil, fmt.Errorf("awskms signer %s: KMS did not name the key it resolved", name)
	}
	sign := func(msg []byte) ([]byte, error) {
		sum := sha256.Sum256(msg)
		sctx, cancel := context.WithTimeout(context.Background(), signTimeout)
		defer cancel()
		res, err := c.Sign(sctx, &kms.SignInput{
			KeyId: aws.String(arn), Message: sum[:],
			MessageType:      types.MessageTypeDigest,
			SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256,
		})
		if err != nil {
			return nil, signErr("sign", name, err)
		}
		return res.Signature, nil
	}
	s, err := evidence.NewRemoteSigner(pub, sign)
	if err != nil {
		return nil, err
	}
	log.Info("evidence signer: AWS KMS key", "key", key, "arn", arn, "keyId", s.KeyID())
	return s, nil
}

// signErr names the step and the key, with KMS's reason; it never quotes
// what was signed.
func signErr(op, name string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("awskms signer: %s %s: %w", op, name, err)
	}
	return fmt.Errorf("awskms signer: %s %s: %s", op, name, kmsReason(err))
}
