package embedded

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// etcdPKI are the files of the scratch etcd's throwaway certificate
// authority: etcd serves clients (and its peer port) with TLS and requires
// a client certificate that CA signed. The CA's key is never written: it
// signs the two certificates and is dropped, so no further certificate can
// be made for this etcd.
type etcdPKI struct {
	// CAFile is the CA certificate (PEM).
	CAFile string
	// ServerCert and ServerKey are etcd's certificate for 127.0.0.1 and its
	// key. The certificate is valid for client authentication too: etcd's
	// gRPC gateway and peer transport dial with it.
	ServerCert, ServerKey string
	// ClientCert and ClientKey are the client certificate kube-apiserver and
	// lifeboat use, and its key.
	ClientCert, ClientKey string
}

// pkiValidity is how long the scratch etcd's certificates are valid. A
// drill (or a --keep inspection) is far shorter; the CA is throwaway.
const pkiValidity = 24 * time.Hour

// writeEtcdPKI makes a new CA (ECDSA P-256), a server certificate for
// 127.0.0.1 and a client certificate in dir (created 0700; files 0600).
func writeEtcdPKI(dir string, now time.Time) (etcdPKI, error) {
	p := etcdPKI{
		CAFile:     filepath.Join(dir, "ca.crt"),
		ServerCert: filepath.Join(dir, "server.crt"),
		ServerKey:  filepath.Join(dir, "server.key"),
		ClientCert: filepath.Join(dir, "client.crt"),
		ClientKey:  filepath.Join(dir, "client.key"),
	}
	if err := mkdir(dir); err != nil {
		return p, err
	}
	notBefore, notAfter := now.Add(-5*time.Minute), now.Add(pkiValidity)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, fmt.Errorf("etcd CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "lifeboat scratch etcd CA"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	if caTmpl.SerialNumber, err = serialNumber(); err != nil {
		return p, err
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return p, fmt.Errorf("etcd CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return p, fmt.Errorf("etcd CA certificate: %w", err)
	}
	if err := writePEM(p.CAFile, "CERTIFICATE", caDER); err != nil {
		return p, err
	}

	issue := func(cn string, usage []x509.ExtKeyUsage, ips []net.IP, certFile, keyFile string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return fmt.Errorf("%s key: %w", cn, err)
		}
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: cn},
			NotBefore:   notBefore,
			NotAfter:    notAfter,
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: usage,
			IPAddresses: ips,
		}
		if tmpl.SerialNumber, err = serialNumber(); err != nil {
			return err
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return fmt.Errorf("%s certificate: %w", cn, err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return fmt.Errorf("%s key: %w", cn, err)
		}
		if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
			return err
		}
		return writePEM(keyFile, "PRIVATE KEY", keyDER)
	}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	if err := issue("lifeboat scratch etcd", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		loopback, p.ServerCert, p.ServerKey); err != nil {
		return p, err
	}
	if err := issue("lifeboat scratch etcd client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		nil, p.ClientCert, p.ClientKey); err != nil {
		return p, err
	}
	return p, nil
}

// clientTLS returns a TLS client configuration for the scratch etcd: it
// trusts only the throwaway CA and presents the client certificate.
func (p etcdPKI) clientTLS() (*tls.Config, error) {
	caPEM, err := os.ReadFile(p.CAFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no certificate in the scratch etcd's CA file")
	}
	cert, err := tls.LoadX509KeyPair(p.ClientCert, p.ClientKey)
	if err != nil {
		return nil, fmt.Errorf("scratch etcd client certificate: %w", err)
	}
	return &tls.Config{
		RootCAs:      roots,
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}, nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// writePEM writes one PEM block to a new file, mode 0600.
func writePEM(path, typ string, der []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
