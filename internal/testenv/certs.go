package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki holds the files the control plane needs: a CA, the apiserver's serving
// certificate signed by it (so clients verify TLS instead of skipping it), and
// the service-account signing key pair.
type pki struct {
	caCert, servingCert, servingKey string
	saKey, saPub                    string
	caPEM                           []byte
	// The aggregation layer's request-header CA and the front-proxy client
	// certificate (CN front-proxy-client) kube-apiserver presents to
	// extension apiservers such as metrics-server.
	frontProxyCA, frontProxyCert, frontProxyKey string
}

// certAuthority is a throw-away CA. Every certificate of the test
// environment is made per run and valid for a day, so no long-lived key is
// ever written.
type certAuthority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// leaf describes a certificate for certAuthority.sign.
type leaf struct {
	cn    string
	dns   []string
	ips   []net.IP
	usage []x509.ExtKeyUsage
}

// certValidity is how long test certificates are valid, from an hour ago
// (clock skew between processes) on.
func certValidity() (notBefore, notAfter time.Time) {
	now := time.Now()
	return now.Add(-time.Hour), now.Add(24 * time.Hour)
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n, nil
}

// newCA makes a self-signed P-256 CA named cn.
func newCA(cn string) (*certAuthority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", cn, err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	notBefore, notAfter := certValidity()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-sign %s: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", cn, err)
	}
	return &certAuthority{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// sign issues a certificate for l with a new P-256 key, both PEM-encoded.
func (ca *certAuthority) sign(l leaf) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate %s key: %w", l.cn, err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	notBefore, notAfter := certValidity()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: l.cn},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  l.usage,
		DNSNames:     l.dns,
		IPAddresses:  l.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign %s: %w", l.cn, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal %s key: %w", l.cn, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// writeFiles writes each file readable by its owner only.
func writeFiles(files map[string][]byte) error {
	for path, b := range files {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}

func writePKI(dir string) (*pki, error) {
	ca, err := newCA("swell-testenv-ca")
	if err != nil {
		return nil, err
	}
	srvCert, srvKey, err := ca.sign(leaf{
		cn:    "kube-apiserver",
		dns:   []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		ips:   []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
		usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate service-account key: %w", err)
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("marshal service-account public key: %w", err)
	}
	p := &pki{
		caCert:      filepath.Join(dir, "ca.crt"),
		servingCert: filepath.Join(dir, "apiserver.crt"),
		servingKey:  filepath.Join(dir, "apiserver.key"),
		saKey:       filepath.Join(dir, "sa.key"),
		saPub:       filepath.Join(dir, "sa.pub"),
		caPEM:       ca.pem,
	}
	if err := writeFiles(map[string][]byte{
		p.caCert:      p.caPEM,
		p.servingCert: srvCert,
		p.servingKey:  srvKey,
		p.saKey:       pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
		p.saPub:       pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER}),
	}); err != nil {
		return nil, err
	}
	if err := writeFrontProxyPKI(dir, p); err != nil {
		return nil, err
	}
	return p, nil
}

// writeFrontProxyPKI creates the request-header CA and the front-proxy
// client certificate it signs.
func writeFrontProxyPKI(dir string, p *pki) error {
	ca, err := newCA("swell-testenv-front-proxy-ca")
	if err != nil {
		return err
	}
	cert, key, err := ca.sign(leaf{cn: "front-proxy-client", usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return err
	}
	p.frontProxyCA = filepath.Join(dir, "front-proxy-ca.crt")
	p.frontProxyCert = filepath.Join(dir, "front-proxy-client.crt")
	p.frontProxyKey = filepath.Join(dir, "front-proxy-client.key")
	return writeFiles(map[string][]byte{p.frontProxyCA: ca.pem, p.frontProxyCert: cert, p.frontProxyKey: key})
}

// writeServingCert writes a serving certificate for host and ip, signed by a
// fresh CA, into dir and returns the CA's PEM (the bundle clients pin) and
// the certificate and key files.
func writeServingCert(dir, host string, ip net.IP) (caPEM []byte, certFile, keyFile string, err error) {
	ca, err := newCA(host + "-ca")
	if err != nil {
		return nil, "", "", err
	}
	cert, key, err := ca.sign(leaf{cn: host, dns: []string{host}, ips: []net.IP{ip}, usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return nil, "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := writeFiles(map[string][]byte{certFile: cert, keyFile: key}); err != nil {
		return nil, "", "", err
	}
	return ca.pem, certFile, keyFile, nil
}
