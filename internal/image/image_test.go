package image_test

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/lifeboat-dr/lifeboat/internal/image"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// staticLifeboat builds lifeboat with CGO_ENABLED=0, as `make image` does.
func staticLifeboat(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "lifeboat")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "../../cmd/lifeboat")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build lifeboat: %v\n%s", err, b)
	}
	return out
}

// TestImage builds the image from static binaries (lifeboat, and the
// kube-apiserver and Vault make testbin builds), writes it as an OCI
// layout, opens it again and checks what a reviewer checks: user
// 65532:65532, entrypoint lifeboat, labels, no shell or other binaries,
// the CA bundle; each binary extracted from the image runs; the same
// inputs give the same digest; the SBOM lists each binary and its
// modules; a dynamically linked binary is refused.
func TestImage(t *testing.T) {
	o := image.Options{
		Binaries: map[string]string{"lifeboat": staticLifeboat(t), "kube-apiserver": testenv.Binary(t, "kube-apiserver"), "vault": testenv.Binary(t, "vault")},
		CACerts:  "/etc/ssl/certs/ca-certificates.crt", Version: "test", Revision: "0123abc",
	}
	dir := filepath.Join(t.TempDir(), "image")
	res, err := image.Make(o, dir, "lifeboat:test", dir+".cdx.json")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s, %d MiB", res.Digest, res.Size>>20)
	again, err := image.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := again.Digest(); d.String() != res.Digest {
		t.Fatalf("not reproducible: %s then %s", res.Digest, d)
	}

	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "lifeboat:test" {
		t.Fatalf("index %+v %v", im, err)
	}
	img, err := p.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" || strings.Join(c.Entrypoint, " ") != "/usr/local/bin/lifeboat" || c.Labels["org.opencontainers.image.revision"] != "0123abc" ||
		c.Labels["org.opencontainers.image.source"] == "" || cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Fatalf("config %+v", c)
	}

	// The files: extract the binaries, and no shell anywhere.
	files := map[string]*tar.Header{}
	bin := t.TempDir()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		extract(t, l, bin, files)
	}
	for _, f := range []string{"bin/sh", "bin/bash", "bin/busybox", "usr/bin/env"} {
		if _, ok := files[f]; ok {
			t.Errorf("the image holds %s", f)
		}
	}
	for _, f := range []string{"etc/passwd", "etc/ssl/certs/ca-certificates.crt", "usr/local/bin/lifeboat", "usr/local/bin/kube-apiserver", "usr/local/bin/vault", "tmp/"} {
		if _, ok := files[f]; !ok {
			t.Errorf("the image lacks %s", f)
		}
	}
	if h := files["usr/local/bin/lifeboat"]; h != nil && (h.Uid != 0 || h.Mode&0o022 != 0) {
		t.Errorf("lifeboat in the image: owner %d mode %o, want root-owned and not writable by others", h.Uid, h.Mode)
	}
	for name, args := range map[string][]string{"lifeboat": {"version"}, "kube-apiserver": {"--version"}, "vault": {"version"}} {
		out, err := exec.Command(filepath.Join(bin, name), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v from the image: %v\n%s", name, args, err, out)
		}
		t.Logf("%s: %s", name, strings.TrimSpace(string(out)))
	}

	// The SBOM.
	raw, err := os.ReadFile(dir + ".cdx.json")
	if err != nil {
		t.Fatal(err)
	}
	var bom struct {
		BOMFormat  string `json:"bomFormat"`
		Components []struct {
			Type, Name, PURL string
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &bom); err != nil || bom.BOMFormat != "CycloneDX" {
		t.Fatalf("SBOM: %v", err)
	}
	have := map[string]bool{}
	for _, c := range bom.Components {
		have[c.Type+" "+c.Name] = true
		if c.Type == "library" && c.Name == "go.etcd.io/etcd/client/v3" && !strings.HasPrefix(c.PURL, "pkg:golang/go.etcd.io/etcd/client/v3@v3.") {
			t.Errorf("purl %s", c.PURL)
		}
	}
	for _, want := range []string{"application lifeboat", "application kube-apiserver", "application vault", "library go.etcd.io/etcd/client/v3", "library github.com/hashicorp/vault/api"} {
		if !have[want] {
			t.Errorf("SBOM lacks %s", want)
		}
	}

	// A dynamically linked binary is refused.
	dyn := o
	dyn.Binaries = map[string]string{"lifeboat": "/bin/ls"}
	if _, err := image.Build(dyn); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Fatalf("a dynamic binary: %v", err)
	}
}

func extract(t *testing.T, l v1.Layer, binDir string, files map[string]*tar.Header) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
		if dir, name := filepath.Split(h.Name); dir == "usr/local/bin/" && name != "" {
			f, err := os.OpenFile(filepath.Join(binDir, name), os.O_CREATE|os.O_WRONLY, 0o755)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
}
