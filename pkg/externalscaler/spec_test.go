package externalscaler

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestParseEverySource(t *testing.T) {
	p := &Parser{Files: SecretFiles{Dir: "/secrets", ReadFile: func(name string) ([]byte, error) {
		if name == "/secrets/kafka/password" {
			return []byte("from-file\n"), nil
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}, Bindings: Bindings{"kafka/password": {"k:9092"}}}}
	for _, tc := range []struct {
		md     map[string]string
		metric string
		target float64
	}{
		{map[string]string{"source": "kafka", "bootstrapServers": "k:9092", "consumerGroup": "orders", "sasl": "scram_sha512", "username": "u", "passwordFile": "kafka/password"}, "kafka-lag-orders", 10},
		{map[string]string{"source": "kafka", "bootstrapServers": "k:9092", "consumerGroup": "Orders_EU", "metric": "eta", "targetETASeconds": "30"}, "kafka-eta-orders-eu", 30},
		{map[string]string{"source": "burrow", "burrowURL": "http://burrow:8000", "cluster": "local", "consumerGroup": "g"}, "burrow-lag-g", 10},
		{map[string]string{"source": "redis", "address": "redis:6379", "listName": "jobs", "passwordFromEnv": "pw"}, "redis-jobs", 5},
		{map[string]string{"source": "rabbitmq", "host": "rabbit", "queueName": "tasks", "queueLength": "7"}, "rabbitmq-tasks", 7},
		{map[string]string{"source": "nats", "natsURL": "nats://n:4222", "stream": "S", "consumer": "c"}, "nats-s-c", 10},
		{map[string]string{"source": "prometheus", "serverAddress": "http://prom:9090", "query": "sum(x)", "threshold": "3"}, "prometheus-query", 3},
		{map[string]string{"source": "http", "url": "https://api/x", "valueLocation": "a.b", "targetValue": "2"}, "http-value", 2},
	} {
		s, err := p.Parse(tc.md)
		if err != nil {
			t.Errorf("%s: %v", tc.md["source"], err)
			continue
		}
		if m := s.Metrics[0]; m.Name != tc.metric || m.Target != tc.target {
			t.Errorf("%s: metric %+v, want %s target %v", tc.md["source"], m, tc.metric, tc.target)
		}
		if strings.Contains(s.Key, "from-file") || strings.Contains(s.Key, "pw") && tc.md["source"] == "redis" && !strings.Contains(s.Key, "creds=") {
			t.Errorf("%s: key leaks or lacks the credential digest: %s", tc.md["source"], s.Key)
		}
	}
}

func TestParseErrorsNameKeys(t *testing.T) {
	p := &Parser{Files: SecretFiles{Dir: "/secrets"}}
	for _, tc := range []struct {
		md   map[string]string
		want []string
	}{
		{map[string]string{}, []string{`"source" is required`}},
		{map[string]string{"source": "sqs"}, []string{`"sqs" is not a Swell source`, "kafka"}},
		{map[string]string{"source": "kafka", "bootstrapServers": "k:1", "consumerGroup": "g", "metric": "speed"}, []string{`"metric": "speed"`}},
		{map[string]string{"source": "kafka", "bootstrapServers": "k:1", "consumerGroup": "g", "passwordFile": "../../var/run/secrets/token"}, []string{`"passwordFile"`, "no .. element"}},
		{map[string]string{"source": "kafka", "bootstrapServers": "k:1", "consumerGroup": "g", "passwordFile": "/etc/passwd"}, []string{`"passwordFile"`, "relative"}},
		{map[string]string{"source": "redis", "host": "r", "listName": "l", "passwordFromEnv": "a", "passwordFile": "b"}, []string{"both set"}},
		{map[string]string{"source": "http", "url": "ftp://x", "valueLocation": "a", "targetValue": "-1"}, []string{`"url" must be an http`, `"targetSize": -1 must be greater than 0`}},
		{map[string]string{"source": "prometheus", "serverAddress": "http://p", "query": "q", "ignoreNullValues": "maybe"}, []string{`"ignoreNullValues": "maybe" is not a boolean`}},
		{map[string]string{"entityType": "plugin", "pluginName": "tika", "targetSize": "1"}, []string{"--plugins"}},
	} {
		_, err := p.Parse(tc.md)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Parse(%v) = %v, want it to mention %s", tc.md, err, w)
			}
		}
	}
}

func TestAzulPluginsAndIncludeHistoric(t *testing.T) {
	pc, err := ParsePlugins([]byte(`
kafka: {brokers: ["k:9092"], sasl: plaintext, username: u, passwordEnv: KPW}
plugins:
  plugin-tika: {groups: [azul.tika.live, azul.tika-historic], historicGroups: [azul.tika.replay]}
`), func(k string) string { return map[string]string{"KPW": "pw"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	p := &Parser{Plugins: pc}
	md := map[string]string{"entityName": "plugin", "pluginName": "plugin-tika", "targetSize": "5", "includeHistoric": "false"}
	live, err := p.Parse(md)
	if err != nil {
		t.Fatal(err)
	}
	if tg := live.target.(kafkaTarget); strings.Join(tg.Groups, ",") != "azul.tika.live" || tg.Conn.Password.Reveal() != "pw" || tg.RateWindow != azulWindow {
		t.Fatalf("live target = %+v", tg)
	}
	if live.Metrics[0].Name != "backlog" || !live.AlwaysActive {
		t.Fatalf("spec = %+v", live)
	}
	md["includeHistoric"] = "TRUE"
	md["activationThreshold"] = "3"
	all, err := p.Parse(md)
	if err != nil {
		t.Fatal(err)
	}
	if tg := all.target.(kafkaTarget); strings.Join(tg.Groups, ",") != "azul.tika.live,azul.tika-historic,azul.tika.replay" {
		t.Fatalf("historic groups = %v", tg.Groups)
	}
	if all.AlwaysActive || all.Key == live.Key {
		t.Fatalf("activationThreshold should make activity real and the targets differ: %+v", all)
	}
	md["pluginName"] = "plugin-nope"
	if _, err := p.Parse(md); err == nil || !strings.Contains(err.Error(), "known plugins: plugin-tika") {
		t.Fatalf("unknown plugin: %v", err)
	}
	md["entityType"] = "ingestor"
	if _, err := p.Parse(md); err == nil || !strings.Contains(err.Error(), `"entityType": "ingestor"`) {
		t.Fatalf("unknown entity: %v", err)
	}
	if _, err := ParsePlugins([]byte("plugins: {}\n"), nil); err == nil {
		t.Fatal("empty plugins file accepted")
	}
}

func TestSecretFileErrorsNeverShowContent(t *testing.T) {
	f := SecretFiles{Dir: "/s", ReadFile: func(string) ([]byte, error) { return nil, errors.New("boom") }}
	if _, err := f.read("passwordFile", "x"); err == nil || !strings.Contains(err.Error(), `"passwordFile"`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := (SecretFiles{}).read("passwordFile", "x"); err == nil || !strings.Contains(err.Error(), "--secrets-dir") {
		t.Fatalf("disabled: %v", err)
	}
}

// TestExamplePluginsFileLoads keeps examples/external-scaler/plugins.yaml
// valid.
func TestExamplePluginsFileLoads(t *testing.T) {
	pc, err := LoadPlugins("../../examples/external-scaler/plugins.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if got := pc.Plugins["plugin-tika"].groups(false); len(got) != 2 {
		t.Fatalf("live groups = %v, want the two non-historic ones", got)
	}
}
