package brokerconn_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
)

func TestSecretNeverPrints(t *testing.T) {
	const pw = "s3cr3t-value"
	cfg := struct {
		User string
		Pass brokerconn.Secret
		TLS  brokerconn.TLS
	}{"u", pw, brokerconn.TLS{KeyPEM: pw}}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%v|%s", cfg.Pass, cfg.Pass), string(js)} {
		if strings.Contains(out, pw) {
			t.Errorf("printed form shows the secret: %s", out)
		}
	}
	if cfg.Pass.Reveal() != pw {
		t.Errorf("Reveal = %q, want the value", cfg.Pass.Reveal())
	}
}

func TestTLSConfig(t *testing.T) {
	off, err := brokerconn.TLS{}.Config("h")
	if err != nil || off != nil {
		t.Fatalf("TLS off: %v, %v; want nil, nil", off, err)
	}
	on, err := brokerconn.TLS{Enabled: true}.Config("broker.example")
	if err != nil || on.ServerName != "broker.example" {
		t.Fatalf("TLS on: %+v, %v; want ServerName from the host", on, err)
	}
	named, _ := brokerconn.TLS{Enabled: true, ServerName: "override"}.Config("broker.example")
	if named.ServerName != "override" {
		t.Fatalf("ServerName = %q, want override", named.ServerName)
	}
}
