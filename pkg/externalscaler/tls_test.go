package externalscaler_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/swell-autoscaler/swell/pkg/externalscaler"
	"github.com/swell-autoscaler/swell/pkg/externalscaler/scalertest"
)

// testCA issues certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "swell test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns PEM cert and key for a server (127.0.0.1) or a client.
func (ca *testCA) issue(t *testing.T, cn string, server bool) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTLSAndMutualTLS: with --tls-cert/--tls-key a client trusting the CA
// connects; with --tls-client-ca only a client with a certificate the CA
// signed does (as KEDA's tlsClientCert/tlsClientKey provide).
func TestTLSAndMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, rogue := newCA(t), newCA(t)
	sc, sk := ca.issue(t, "swell", true)
	cc, ck := ca.issue(t, "keda", false)
	rc, rk := rogue.issue(t, "intruder", false)
	files := externalscaler.TLSFiles{CertFile: writeFile(t, dir, "tls.crt", sc), KeyFile: writeFile(t, dir, "tls.key", sk)}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	js := newJSONServer(t, `{"queue": {"depth": 1}}`)
	ref := httpRef(js.URL)
	call := func(h *scalertest.Scaler) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := h.Client.GetMetricSpec(ctx, ref)
		return err
	}
	pair := func(c, k []byte) []tls.Certificate {
		p, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{p}
	}

	serverTLS, err := files.Config()
	if err != nil {
		t.Fatal(err)
	}
	h := scalertest.Start(t, scalertest.Options{ServerTLS: serverTLS, ClientTLS: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}})
	if err := call(h); err != nil {
		t.Fatalf("TLS: %v", err)
	}
	plain := scalertest.Start(t, scalertest.Options{ServerTLS: serverTLS})
	if err := call(plain); err == nil {
		t.Fatal("a plaintext client reached a TLS server")
	}

	files.ClientCAFile = writeFile(t, dir, "ca.crt", ca.pem)
	mtls, err := files.Config()
	if err != nil {
		t.Fatal(err)
	}
	good := scalertest.Start(t, scalertest.Options{ServerTLS: mtls, ClientTLS: &tls.Config{RootCAs: roots, Certificates: pair(cc, ck), MinVersion: tls.VersionTLS12}})
	if err := call(good); err != nil {
		t.Fatalf("mTLS with a signed client certificate: %v", err)
	}
	for name, certs := range map[string][]tls.Certificate{"no client certificate": nil, "certificate of another CA": pair(rc, rk)} {
		bad := scalertest.Start(t, scalertest.Options{ServerTLS: mtls, ClientTLS: &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12}})
		if err := call(bad); err == nil {
			t.Errorf("mTLS accepted a client with %s", name)
		}
	}
	if _, err := (externalscaler.TLSFiles{CertFile: files.CertFile}).Config(); err == nil {
		t.Error("--tls-cert without --tls-key accepted")
	}
}
