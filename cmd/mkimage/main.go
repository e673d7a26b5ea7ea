// Command mkimage builds lifeboat's OCI image without a container engine
// (internal/image): `make image` runs it. It writes the image as an OCI
// layout in --out and its CycloneDX SBOM beside it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lifeboat-dr/lifeboat/internal/image"
)

func main() {
	var (
		o       image.Options
		out     string
		ref     string
		bins    = map[string]*string{"lifeboat": new(string), "kube-apiserver": new(string), "vault": new(string)}
		sbomOut string
	)
	for n, p := range bins {
		flag.StringVar(p, n, "", "path of the static "+n+" binary")
	}
	flag.StringVar(&o.CACerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "PEM bundle of CA certificates to install")
	flag.StringVar(&o.Version, "version", "dev", "image version label")
	flag.StringVar(&o.Revision, "revision", "", "source revision label")
	flag.StringVar(&out, "out", "bin/image", "directory to write the OCI image layout to (must not exist)")
	flag.StringVar(&ref, "ref", "lifeboat:dev", "reference name recorded in the layout's index")
	flag.StringVar(&sbomOut, "sbom", "", "where to write the CycloneDX SBOM (default: <out>.cdx.json)")
	flag.Parse()
	o.Binaries = map[string]string{}
	for n, p := range bins {
		if *p != "" {
			o.Binaries[n] = *p
		}
	}
	if sbomOut == "" {
		sbomOut = filepath.Clean(out) + ".cdx.json"
	}
	if err := run(o, out, ref, sbomOut); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(o image.Options, out, ref, sbomOut string) error {
	res, err := image.Make(o, out, ref, sbomOut)
	if err != nil {
		return err
	}
	fmt.Printf("image %s written to %s (%d MiB), SBOM %s\n", res.Digest, out, res.Size>>20, sbomOut)
	return nil
}
