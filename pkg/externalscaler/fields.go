package externalscaler

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
)

// kedaKeys are trigger metadata keys KEDA itself reads; they reach the
// server with the rest and are ignored, not rejected.
var kedaKeys = map[string]bool{
	"scalerAddress": true, "enableTLS": true, "unsafeSsl": true,
	"caCert": true, "tlsClientCert": true, "tlsClientKey": true,
}

// SecretFiles reads `<key>File` credentials, only from under Dir: a
// ScaledObject author must not be able to make the server read (and send
// to a broker of their choosing) any other file it can read, such as its
// service account token.
type SecretFiles struct {
	// Dir holds mounted Secrets; empty disables `<key>File`.
	Dir string
	// ReadFile reads a file (os.ReadFile when nil; tests inject).
	ReadFile func(string) ([]byte, error)
	// Bindings declares where each credential may be sent; a credential
	// not declared here is never read (see binding.go).
	Bindings Bindings
}

func (s SecretFiles) read(key, name string) (brokerconn.Secret, error) {
	if s.Dir == "" {
		return "", fmt.Errorf("metadata %q: secret files are disabled (start the server with --secrets-dir)", key)
	}
	if filepath.IsAbs(name) || strings.Contains(filepath.ToSlash(filepath.Clean(name)), "..") {
		return "", fmt.Errorf("metadata %q: %q must be a path relative to the secrets directory %s with no .. element", key, name, s.Dir)
	}
	if _, ok := s.Bindings[name]; !ok {
		return "", fmt.Errorf("metadata %q: credential %q is not declared with its broker address (start the server with --credential %s=HOST:PORT)", key, name, name)
	}
	read := s.ReadFile
	if read == nil {
		read = os.ReadFile
	}
	b, err := read(filepath.Join(s.Dir, filepath.Clean(name)))
	if err != nil {
		return "", fmt.Errorf("metadata %q: read secret file %q under %s: %w", key, name, s.Dir, errors.Unwrap(err))
	}
	return brokerconn.Secret(strings.TrimRight(string(b), "\r\n")), nil
}

// fields decodes scalerMetadata into typed values, collecting every error
// (each naming its key) and remembering which keys were used, so unknown
// keys are reported too.
type fields struct {
	md      map[string]string
	files   SecretFiles
	used    map[string]bool
	errs    []error
	secrets []string
	// fileCreds are the secrets-directory credentials used, by name.
	fileCreds []string
}

func newFields(md map[string]string, files SecretFiles) *fields {
	return &fields{md: md, files: files, used: map[string]bool{}}
}

func (f *fields) fail(format string, args ...any) {
	f.errs = append(f.errs, fmt.Errorf(format, args...))
}

// lookup returns a key's trimmed value, trying aliases in order.
func (f *fields) lookup(keys ...string) (string, string, bool) {
	for _, k := range keys {
		f.used[k] = true
	}
	for _, k := range keys {
		if v, ok := f.md[k]; ok {
			return k, strings.TrimSpace(v), true
		}
	}
	return keys[0], "", false
}

func (f *fields) str(def string, keys ...string) string {
	if _, v, ok := f.lookup(keys...); ok && v != "" {
		return v
	}
	return def
}

func (f *fields) required(hint string, keys ...string) string {
	k, v, ok := f.lookup(keys...)
	if !ok || v == "" {
		f.fail("metadata %q is required: %s", k, hint)
	}
	return v
}

func (f *fields) float(def float64, keys ...string) float64 {
	k, v, ok := f.lookup(keys...)
	if !ok || v == "" {
		return def
	}
	x, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		f.fail("metadata %q: %q is not a number; use e.g. \"10\" or \"2.5\"", k, v)
		return def
	}
	return x
}

func (f *fields) positive(def float64, keys ...string) float64 {
	x := f.float(def, keys...)
	if x <= 0 {
		f.fail("metadata %q: %v must be greater than 0", keys[0], x)
	}
	return x
}

func (f *fields) nonNegative(def float64, keys ...string) float64 {
	x := f.float(def, keys...)
	if x < 0 {
		f.fail("metadata %q: %v must be 0 or more", keys[0], x)
	}
	return x
}

func (f *fields) integer(def int, keys ...string) int {
	k, v, ok := f.lookup(keys...)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		f.fail("metadata %q: %q is not a whole number ≥ 0", k, v)
		return def
	}
	return n
}

func (f *fields) boolean(def bool, keys ...string) bool {
	k, v, ok := f.lookup(keys...)
	if !ok || v == "" {
		return def
	}
	b, err := strconv.ParseBool(strings.ToLower(v))
	if err != nil {
		f.fail("metadata %q: %q is not a boolean; use \"true\" or \"false\"", k, v)
		return def
	}
	return b
}

// duration accepts a Go duration ("30s", "2m") or plain seconds ("30").
func (f *fields) duration(def time.Duration, keys ...string) time.Duration {
	k, v, ok := f.lookup(keys...)
	if !ok || v == "" {
		return def
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
		return time.Duration(s * float64(time.Second))
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		f.fail("metadata %q: %q is not a positive duration; use e.g. \"30s\", \"5m\" or seconds \"30\"", k, v)
		return def
	}
	return d
}

// list splits a comma-separated value, dropping empty items.
func (f *fields) list(keys ...string) []string {
	_, v, ok := f.lookup(keys...)
	if !ok {
		return nil
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// secret reads credential name from `<name>FromEnv` (KEDA replaces the
// environment variable's name by its value, read from the scale target's
// containers, before calling an external scaler) or `<name>File` (a file
// under the secrets directory). A plain `<name>` key is refused: a value
// written in a ScaledObject is not a secret.
func (f *fields) secret(name string) brokerconn.Secret {
	fromEnv, fromFile := name+"FromEnv", name+"File"
	f.used[fromEnv], f.used[fromFile], f.used[name] = true, true, true
	if _, plain := f.md[name]; plain {
		f.fail("metadata %q: credentials are not accepted inline; use %q (resolved by KEDA from the scale target's env, e.g. from a Secret) or %q (a file under --secrets-dir)", name, fromEnv, fromFile)
		return ""
	}
	env, hasEnv := f.md[fromEnv]
	file, hasFile := f.md[fromFile]
	switch {
	case hasEnv && hasFile:
		f.fail("metadata %q and %q are both set; use one", fromEnv, fromFile)
		return ""
	case hasEnv:
		return f.remember(brokerconn.Secret(env))
	case hasFile:
		s, err := f.files.read(fromFile, strings.TrimSpace(file))
		if err != nil {
			f.errs = append(f.errs, err)
			return ""
		}
		f.fileCreds = append(f.fileCreds, strings.TrimSpace(file))
		return f.remember(s)
	}
	return ""
}

func (f *fields) remember(s brokerconn.Secret) brokerconn.Secret {
	f.secrets = append(f.secrets, s.Reveal())
	return s
}

// secretDigest identifies the credentials used without revealing them, so
// two ScaledObjects with different passwords get different watchers.
func (f *fields) secretDigest() string {
	if len(f.secrets) == 0 {
		return ""
	}
	h := sha256.New()
	for _, s := range f.secrets {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// done reports unknown keys and returns every error found.
func (f *fields) done() error {
	var unknown []string
	for k := range f.md {
		if !f.used[k] && !kedaKeys[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		f.fail("metadata %q is not a key of this source (misspelt?)", k)
	}
	return errors.Join(f.errs...)
}
