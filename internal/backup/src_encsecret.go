package backup

import (
	"bytes"
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
)

// encryptionConfigSecret takes the EncryptionConfiguration from a Secret
// key, describes it as the file source does, and stores it byte for byte.
// Errors name the Secret and key, never a value; the Secret's bytes are
// zeroed once stored.
func (r *run) encryptionConfigSecret(ctx context.Context, ref *config.SecretKeyRef, m *catalog.Manifest) error {
	if ref == nil || ref.Namespace == "" || ref.Name == "" || ref.Key == "" {
		return fmt.Errorf("encryption config secret: namespace, name and key are required")
	}
	where := fmt.Sprintf("secret %s/%s key %s", ref.Namespace, ref.Name, ref.Key)
	cfg, err := r.kube()
	if err != nil {
		return fmt.Errorf("encryption config %s: %w", where, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("encryption config %s: client: %w", where, err)
	}
	sec, err := cs.CoreV1().Secrets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return fmt.Errorf("encryption config %s: secret %s/%s not found: %w", where, ref.Namespace, ref.Name, err)
		case apierrors.IsForbidden(err):
			return fmt.Errorf("encryption config %s: reading the secret is forbidden: %w", where, err)
		}
		return fmt.Errorf("encryption config %s: get secret: %w", where, err)
	}
	defer func() {
		for k := range sec.Data {
			clear(sec.Data[k])
		}
		for k := range sec.StringData {
			delete(sec.StringData, k)
		}
	}()
	data, ok := sec.Data[ref.Key]
	if !ok {
		return fmt.Errorf("encryption config %s: secret %s/%s has no key %q", where, ref.Namespace, ref.Name, ref.Key)
	}
	desc, err := parseEncryptionConfig(data, where)
	if err != nil {
		return err
	}
	a, err := r.putArtifact(ctx, catalog.ArtifactEncryptionConfig, catalog.SourceEncryptionConfig, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return err
	}
	m.Artifacts = append(m.Artifacts, a)
	m.EncryptionConfig = &desc
	return nil
}
