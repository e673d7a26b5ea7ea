package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BinDir is where the binaries are in the image.
const BinDir = "/usr/local/bin"

// UID and GID of the image's user, "nonroot", as in distroless images.
const (
	UID = 65532
	GID = 65532
)

// Options say what goes in the image.
type Options struct {
	// Binaries are the static executables, by their name in BinDir:
	// "lifeboat" (the entrypoint), "kube-apiserver", "vault". Each must be
	// statically linked (no ELF interpreter): the image has no libc.
	Binaries map[string]string
	// CACerts is the PEM bundle installed as
	// /etc/ssl/certs/ca-certificates.crt (Debian's, by default).
	CACerts string
	// Version and Revision are the image's version and source revision
	// labels.
	Version, Revision string
	// Created is the image's creation time; zero means the Unix epoch, so
	// the same inputs give the same image digest.
	Created time.Time
}

// Labels are the OCI annotations every image carries.
func labels(o Options) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "lifeboat",
		"org.opencontainers.image.description": "Backup, key rotation and disaster-recovery drills for Kubernetes clusters holding PHI",
		"org.opencontainers.image.source":      "https://github.com/lifeboat-dr/lifeboat",
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Revision,
	}
}

// Build returns the image: one layer with the system files (passwd,
// group, CA certificates, an empty writable-by-nonroot /tmp mount point),
// one with the binaries; user 65532, entrypoint lifeboat, no shell.
func Build(o Options) (v1.Image, error) {
	if _, ok := o.Binaries["lifeboat"]; !ok {
		return nil, errors.New("image: no lifeboat binary")
	}
	created := o.Created
	if created.IsZero() {
		created = time.Unix(0, 0).UTC()
	}
	ca, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, fmt.Errorf("image: CA certificates: %w", err)
	}
	sys := []file{
		{name: "etc/", dir: true, mode: 0o755},
		{name: "etc/passwd", data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"), mode: 0o644},
		{name: "etc/group", data: []byte("root:x:0:\nnonroot:x:65532:\n"), mode: 0o644},
		{name: "etc/ssl/", dir: true, mode: 0o755},
		{name: "etc/ssl/certs/", dir: true, mode: 0o755},
		{name: "etc/ssl/certs/ca-certificates.crt", data: ca, mode: 0o644},
		{name: "home/", dir: true, mode: 0o755},
		{name: "home/nonroot/", dir: true, mode: 0o700, uid: UID, gid: GID},
		{name: "tmp/", dir: true, mode: 0o1777},
	}
	bins := []file{{name: "usr/", dir: true, mode: 0o755}, {name: "usr/local/", dir: true, mode: 0o755}, {name: "usr/local/bin/", dir: true, mode: 0o755}}
	names := make([]string, 0, len(o.Binaries))
	for n := range o.Binaries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := o.Binaries[n]
		if err := static(p); err != nil {
			return nil, fmt.Errorf("image: %s (%s): %w", n, p, err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("image: %s: %w", n, err)
		}
		bins = append(bins, file{name: path.Join(BinDir, n)[1:], data: data, mode: 0o755})
	}
	img := empty.Image
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, files := range [][]file{sys, bins} {
		l, err := layer(files, created)
		if err != nil {
			return nil, err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return nil, fmt.Errorf("image: append layer: %w", err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = "amd64", "linux", v1.Time{Time: created}
	cf.Config.User = fmt.Sprintf("%d:%d", UID, GID)
	cf.Config.Entrypoint = []string{BinDir + "/lifeboat"}
	cf.Config.Cmd = []string{"serve", "--config", "/etc/lifeboat"}
	cf.Config.WorkingDir = "/home/nonroot"
	cf.Config.Env = []string{
		"PATH=" + BinDir,
		"HOME=/home/nonroot",
		"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
		"LIFEBOAT_KUBE_APISERVER=" + BinDir + "/kube-apiserver",
		"LIFEBOAT_VAULT=" + BinDir + "/vault",
	}
	cf.Config.Labels = labels(o)
	cf.Config.ExposedPorts = map[string]struct{}{"8080/tcp": {}}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image: config: %w", err)
	}
	return mutate.Annotations(img, labels(o)).(v1.Image), nil
}

// WriteLayout writes img as an OCI image layout in dir (created; it must
// not exist), tagged ref in the index's annotations.
func WriteLayout(dir string, img v1.Image, ref string) error {
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("image: %s exists", dir)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("image: layout %s: %w", dir, err)
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref}))
}

// static fails unless the ELF file at p has no interpreter (it is
// statically linked: the image has no dynamic loader or libc).
func static(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (it names an ELF interpreter); build it with CGO_ENABLED=0")
		}
	}
	return nil
}

type file struct {
	name     string
	data     []byte
	dir      bool
	mode     int64
	uid, gid int
}

// layer makes a reproducible layer: fixed times, numeric owners only.
func layer(files []file, mtime time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.gid, ModTime: mtime, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	// Fastest gzip: the binaries barely compress further, and the layer is
	// compressed for every digest.
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestSpeed))
}

// Result is what Make wrote.
type Result struct {
	Digest string
	// Size is the bytes of the OCI layout on disk.
	Size int64
}

// Make builds the image, writes it as an OCI layout in dir and its SBOM
// to sbomPath: what `make image` does.
func Make(o Options, dir, ref, sbomPath string) (Result, error) {
	img, err := Build(o)
	if err != nil {
		return Result{}, err
	}
	if err := WriteLayout(dir, img, ref); err != nil {
		return Result{}, err
	}
	sbom, err := SBOM(o)
	if err != nil {
		return Result{}, err
	}
	if err := os.WriteFile(sbomPath, sbom, 0o644); err != nil {
		return Result{}, fmt.Errorf("image: SBOM: %w", err)
	}
	d, err := img.Digest()
	if err != nil {
		return Result{}, err
	}
	res := Result{Digest: d.String()}
	err = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			res.Size += fi.Size()
		}
		return err
	})
	return res, err
}
