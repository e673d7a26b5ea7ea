package awskms_test

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys/awskms"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// TestSigner: against local-kms, an ECC_NIST_P256 SIGN_VERIFY key signs
// an evidence log that verifies under the public key KMS exports (PEM of
// its DER, as `aws kms get-public-key` gives it, and as one line of
// base64), named by key ID or by alias; the same log does not verify
// under another key; symmetric, RSA and missing keys are refused with the
// reason.
func TestSigner(t *testing.T) {
	ctx := context.Background()
	k := testenv.StartKMS(t)
	c := rawClient(t, k)
	created, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	keyID := aws.ToString(created.KeyMetadata.KeyId)
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/lifeboat-evidence"), TargetKeyId: aws.String(keyID)}); err != nil {
		t.Fatal(err)
	}
	so := func(key string) awskms.SignerOptions {
		return awskms.SignerOptions{Key: key, Region: k.Region, Endpoint: k.Endpoint, Credentials: creds()}
	}
	byID, err := awskms.NewSigner(ctx, so(keyID))
	if err != nil {
		t.Fatalf("NewSigner by key ID: %v", err)
	}
	byAlias, err := awskms.NewSigner(ctx, so("alias/lifeboat-evidence"))
	if err != nil {
		t.Fatalf("NewSigner by alias: %v", err)
	}
	if byID.KeyID() != byAlias.KeyID() || byID.PublicKey().Algorithm() != evidence.AlgECDSAP256 {
		t.Fatalf("signers %s and %s (%s)", byID.KeyID(), byAlias.KeyID(), byID.PublicKey().Algorithm())
	}

	st, err := fs.Open(ctx, fs.Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 5, 20, 0, 0, 0, time.UTC)
	for i, s := range []*evidence.Signer{byID, byAlias, byID} {
		l := evidence.NewLog(st, s, func() time.Time { return now.Add(time.Duration(i) * time.Minute) })
		if _, err := l.Append(ctx, evidence.Record{Kind: evidence.KindBackup, ID: "b" + string(rune('0'+i)), Outcome: evidence.OutcomeSuccess, Subject: map[string]any{}}); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}

	exported, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(keyID)})
	if err != nil {
		t.Fatal(err)
	}
	for name, file := range map[string][]byte{
		"pem":    pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: exported.PublicKey}),
		"base64": []byte(base64.StdEncoding.EncodeToString(exported.PublicKey) + "\n"),
	} {
		pub, err := evidence.ParsePublicKey(file)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		res, err := evidence.NewLog(st, nil, nil).Verify(ctx, pub)
		if err != nil || res.Records != 3 || len(res.Signers) != 1 || res.Signers[0] != byID.KeyID() {
			t.Fatalf("verify under KMS's exported key (%s): %+v, %v", name, res, err)
		}
	}
	other, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	otherSigner, err := awskms.NewSigner(ctx, so(aws.ToString(other.KeyMetadata.KeyId)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := evidence.NewLog(st, nil, nil).Verify(ctx, otherSigner.PublicKey()); err == nil || !strings.Contains(err.Error(), "publicKey") {
		t.Fatalf("verify under another KMS key: %v", err)
	}

	sym, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	rsa, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ key, want string }{
		"symmetric": {aws.ToString(sym.KeyMetadata.KeyId), "not an asymmetric key"},
		"rsa":       {aws.ToString(rsa.KeyMetadata.KeyId), "RSA_2048"},
		"missing":   {"alias/no-such-key", "alias/no-such-key"},
	} {
		_, err := awskms.NewSigner(ctx, so(tc.key))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", name, err, tc.want)
		}
	}
}
